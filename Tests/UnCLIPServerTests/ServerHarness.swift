import Foundation
import Logging
import UnCLIPEngine
import UnCLIPPipelines
import UnCLIPServer
import UnCLIPService
import UnCLIPStoreSQLite
import UnCLIPTestSupport
import XCTest

/// A real server on a free loopback port, with the shipped model and a fresh store; a URLSession client.
final class TestServer {
    let server: UnCLIPServer
    let running: RunningServer
    let store: SQLiteStore
    let base: URL
    var authorization: String?

    static func engine() throws -> any ImageEngine {
        try EngineRegistry.standard.load(try ModelResolver.resolve(model: Repository.url("weights/shapes")), options: LoadOptions())
    }

    static func start(folder: URL, modelNames: [String] = ["shapes"], configure: (inout ServerConfiguration) -> Void = { _ in }) async throws -> TestServer {
        var config = ServerConfiguration()
        config.port = 0
        configure(&config)
        let store = try SQLiteStore(url: folder.appendingPathComponent("store.sqlite"))
        var logger = Logger(label: "unclip.test")
        logger.logLevel = .warning
        let server = try UnCLIPServer(configuration: config, store: store,
                                      models: try modelNames.map { ServedModel(name: $0, service: GenerationService(store: store, engine: try engine())) },
                                      logger: logger)
        let running = try await server.start()
        return TestServer(server: server, running: running, store: store, base: URL(string: "http://127.0.0.1:\(running.port)")!)
    }

    private init(server: UnCLIPServer, running: RunningServer, store: SQLiteStore, base: URL) {
        self.server = server; self.running = running; self.store = store; self.base = base
    }

    func stop() async throws { try await running.stop() }

    typealias Reply = HTTPReply

    /// One request over a fresh loopback connection ("Connection: close"), read to the end: a plain HTTP/1.1
    /// client, because Foundation's URLSession on Linux hangs on a 401 that carries WWW-Authenticate.
    func call(_ method: String, _ path: String, json: Any? = nil, body: Data? = nil, contentType: String? = nil,
              headers: [String: String] = [:]) async throws -> Reply {
        var payload = body ?? Data()
        var h = headers
        if let json {
            payload = try JSONSerialization.data(withJSONObject: json)
            h["Content-Type"] = "application/json"
        } else if let contentType { h["Content-Type"] = contentType }
        if let authorization, h["Authorization"] == nil { h["Authorization"] = authorization }
        var head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(running.port)\r\nConnection: close\r\nContent-Length: \(payload.count)\r\n"
        for (k, v) in h { head += "\(k): \(v)\r\n" }
        let request = Data((head + "\r\n").utf8) + payload
        let port = running.port
        return try await RawHTTP.send(request, port: port)
    }

    /// Polls a job until it ends.
    func waitForJob(_ id: Int64, timeout: TimeInterval = 120) async throws -> [String: Any] {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let job = try await call("GET", "/api/jobs/\(id)").object
            if let s = job["status"] as? String, ["done", "failed", "cancelled"].contains(s) { return job }
            try await Task.sleep(nanoseconds: 20_000_000)
        }
        XCTFail("job \(id) did not end in \(timeout) s")
        return [:]
    }

    /// Server-Sent Events of a body: (event, data object) pairs.
    static func events(_ text: String) -> [(String, [String: Any])] {
        text.components(separatedBy: "\n\n").compactMap { block in
            var name = "", data = ""
            for line in block.split(separator: "\n") {
                if line.hasPrefix("event: ") { name = String(line.dropFirst(7)) }
                if line.hasPrefix("data: ") { data = String(line.dropFirst(6)) }
            }
            guard !name.isEmpty else { return nil }
            return (name, (try? JSONSerialization.jsonObject(with: Data(data.utf8))) as? [String: Any] ?? [:])
        }
    }
}

/// multipart/form-data as OpenAI's SDK sends it.
func multipart(_ fields: [(name: String, filename: String?, data: Data)]) -> (Data, String) {
    let boundary = "unclip-test-\(UUID().uuidString)"
    var body = Data()
    for f in fields {
        body.append(Data("--\(boundary)\r\n".utf8))
        let file = f.filename.map { "; filename=\"\($0)\"" } ?? ""
        body.append(Data("Content-Disposition: form-data; name=\"\(f.name)\"\(file)\r\n".utf8))
        if f.filename != nil { body.append(Data("Content-Type: image/png\r\n".utf8)) }
        body.append(Data("\r\n".utf8))
        body.append(f.data)
        body.append(Data("\r\n".utf8))
    }
    body.append(Data("--\(boundary)--\r\n".utf8))
    return (body, "multipart/form-data; boundary=\(boundary)")
}

/// Checks a JSON value against a schema of the OpenAPI document (type, required, properties, items, enum,
/// allOf, $ref, additionalProperties: false): the subset our document uses. Returns the mismatches.
struct SchemaCheck {
    let document: [String: Any]

    func resolve(_ schema: [String: Any]) -> [String: Any] {
        guard let ref = schema["$ref"] as? String else { return schema }
        var node: Any = document
        for part in ref.dropFirst(2).split(separator: "/") { node = (node as? [String: Any])?[String(part)] ?? [:] }
        return resolve(node as? [String: Any] ?? [:])
    }

    func errors(_ value: Any, _ schema: [String: Any], at path: String = "$") -> [String] {
        let s = resolve(schema)
        var out: [String] = []
        if let all = s["allOf"] as? [[String: Any]] { for sub in all { out += errors(value, sub, at: path) } }
        if let type = s["type"] {
            let types = (type as? [String]) ?? [type as? String ?? ""]
            if !types.contains(where: { matches(value, $0) }) { return out + ["\(path): \(describe(value)) is not \(types.joined(separator: " or "))"] }
        }
        if let options = s["enum"] as? [String], let v = value as? String, !options.contains(v) { out.append("\(path): '\(v)' not in \(options)") }
        if let object = value as? [String: Any] {
            for key in s["required"] as? [String] ?? [] where object[key] == nil { out.append("\(path): missing '\(key)'") }
            let properties = s["properties"] as? [String: [String: Any]] ?? [:]
            for (key, v) in object {
                if let p = properties[key] { out += errors(v, p, at: "\(path).\(key)") }
                else if s["additionalProperties"] as? Bool == false { out.append("\(path): unexpected '\(key)'") }
            }
        }
        if let array = value as? [Any], let items = s["items"] as? [String: Any] {
            for (i, v) in array.enumerated() { out += errors(v, items, at: "\(path)[\(i)]") }
        }
        return out
    }

    private func matches(_ v: Any, _ type: String) -> Bool {
        switch type {
        case "null": return v is NSNull
        case "object": return v is [String: Any]
        case "array": return v is [Any]
        case "string": return v is String
        case "boolean": return isBool(v)
        case "integer": return !isBool(v) && (v as? NSNumber).map { $0.doubleValue == $0.doubleValue.rounded() } ?? false
        case "number": return !isBool(v) && v is NSNumber
        default: return false
        }
    }

    /// JSONSerialization gives booleans as a Boolean subclass of NSNumber (Linux and Darwin alike).
    private func isBool(_ v: Any) -> Bool { "\(type(of: v))".contains("Boolean") }

    private func describe(_ v: Any) -> String { v is NSNull ? "null" : "\(type(of: v)) \(String(describing: v).prefix(40))" }
}

