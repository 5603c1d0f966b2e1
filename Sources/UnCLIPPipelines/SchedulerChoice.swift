import Foundation
import UnCLIPSchedulers

/// The decoder scheduler chosen by name, for the pipelines. The names and what they build live in
/// `SchedulerRegistry` (UnCLIPSchedulers); this forwards to it.
public enum SchedulerChoice {
    /// Every accepted name, for help texts and errors.
    public static var names: [String] { SchedulerRegistry.acceptedNames }

    /// The scheduler for `name` (nil: the folder's own), configured from `configURL`.
    public static func make(configURL: URL, name: String?) throws -> any Scheduler {
        try SchedulerRegistry.make(configURL: configURL, name: name)
    }
}
