import Foundation
import UnCLIPEngine
import UnCLIPService
import UnCLIPStore

/// A model the server keeps loaded, under the name clients use for it (its folder's name).
public struct ServedModel: Sendable {
    public let name: String
    public let service: GenerationService
    public var engine: any ImageEngine { service.engine }
    public init(name: String, service: GenerationService) { self.name = name; self.service = service }
}

/// The warm models and which one requests get when they name none. A1111's `sd_model_checkpoint` option
/// switches that default among the loaded models (nothing is loaded or unloaded at request time).
public final class ModelPool: @unchecked Sendable {
    public let models: [ServedModel]
    private let lock = NSLock()
    private var defaultName: String

    public init(_ models: [ServedModel]) throws {
        guard let first = models.first else { throw ServerError.noModels }
        var seen = Set<String>()
        for m in models where !seen.insert(m.name).inserted {
            throw ServerError.configuration("two models are named \(m.name); serve folders with different names")
        }
        self.models = models
        defaultName = first.name
    }

    public var defaultModel: ServedModel { lock.withLock { models.first { $0.name == defaultName }! } }

    /// The model named `name` (nil: the default), accepting A1111's "name [hash]" titles.
    public func model(_ name: String?, field: String = "model") throws -> ServedModel {
        guard let name, !name.isEmpty else { return defaultModel }
        let bare = name.split(separator: " [").first.map(String.init) ?? name
        if let m = models.first(where: { $0.name == name || $0.name == bare }) { return m }
        throw APIError.badRequest("unknown model '\(name)'; this server has: \(models.map(\.name).joined(separator: ", "))", field: field)
    }

    public func setDefault(_ name: String, field: String) throws {
        let m = try model(name, field: field)
        lock.withLock { defaultName = m.name }
    }

    /// Services newest-first as search wants them: every served model (each embeds queries in its own space).
    public var services: [GenerationService] { models.map(\.service) }
}
