import Foundation
import UnCLIPPipelines

/// The model families this build runs, keyed by the pipeline class in `model_index.json`.
public struct EngineRegistry: Sendable {
    public let families: [any ImageEngine.Type]

    public init(families: [any ImageEngine.Type]) { self.families = families }

    /// Every family this build has.
    public static let standard = EngineRegistry(families: [StableUnCLIPEngine.self, StableDiffusionEngine.self])

    /// Every pipeline class name some family runs.
    public var classNames: [String] { families.flatMap { $0.classNames } }

    /// The family that runs `model`'s pipeline class.
    public func family(for model: ResolvedModel) throws -> any ImageEngine.Type {
        guard let family = families.first(where: { $0.classNames.contains(model.className) }) else {
            throw EngineError.unknownFamily(className: model.className, path: model.folder.path, known: classNames)
        }
        return family
    }

    /// Loads `model` with the engine of its family.
    public func load(_ model: ResolvedModel, options: LoadOptions) throws -> any ImageEngine {
        try family(for: model).init(model: model, options: options)
    }
}
