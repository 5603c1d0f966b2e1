import Foundation
import Hummingbird

public enum ServerInfo {
    public static let version = "0.7.0"
}

/// Health, metrics and the API description.
struct SystemRoutes {
    let server: UnCLIPServer

    func add(to router: Router<ServerContext>) {
        router.get("healthz") { _, _ in
            try Reply.json(Health(status: "ok", version: ServerInfo.version, models: server.models.models.map(\.name),
                                  uptime: Date().timeIntervalSince(server.started)))
        }
        router.get("metrics") { _, _ in
            Reply.raw(Data(server.metrics.text().utf8), type: "text/plain; version=0.0.4")
        }
        router.get("openapi.json") { _, _ in Reply.raw(Data(OpenAPIDocument.json.utf8), type: "application/json") }
    }

    struct Health: Encodable { let status: String; let version: String; let models: [String]; let uptime: Double }
}
