import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// An HTTP response as the test client read it.
public struct HTTPReply: Sendable {
    public let status: Int
    public let headers: [String: String]
    public let data: Data
    public init(status: Int, headers: [String: String], data: Data) { self.status = status; self.headers = headers; self.data = data }
    public var text: String { String(decoding: data, as: UTF8.self) }
    public var json: Any? { try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]) }
    public var object: [String: Any] { json as? [String: Any] ?? [:] }
    public var array: [[String: Any]] { json as? [[String: Any]] ?? [] }
    public func header(_ name: String) -> String? { headers.first { $0.key.lowercased() == name.lowercased() }?.value }
}

/// Blocking socket I/O for the test client.
public enum RawHTTP {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
        public init(description: String) { self.description = description }
    }

    /// Sends a whole request and reads the whole response, off the cooperative pool.
    public static func send(_ request: Data, port: Int) async throws -> HTTPReply {
        let raw = try await withCheckedThrowingContinuation { (c: CheckedContinuation<Data, Error>) in
            DispatchQueue.global().async { c.resume(with: Result { try exchange(request, port: port) }) }
        }
        return try parse(raw)
    }

    /// A request with a JSON body (or none).
    public static func request(_ method: String, _ path: String, port: Int, json: Any? = nil) async throws -> HTTPReply {
        let body = try json.map { try JSONSerialization.data(withJSONObject: $0) } ?? Data()
        let head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: \(body.count)\r\n\r\n"
        return try await send(Data(head.utf8) + body, port: port)
    }

    public static func exchange(_ request: Data, port: Int) throws -> Data {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket: \(errno)") }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let ok = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard ok == 0 else { throw Failure(description: "connect to port \(port): errno \(errno)") }
        // A server that answers early (413) may stop reading a large body: give up sending then, and read.
        var timeout = timeval(tv_sec: 0, tv_usec: 500_000)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var sent = 0
        try request.withUnsafeBytes { p in
            while sent < p.count {
                let n = Glibc.send(fd, p.baseAddress! + sent, p.count - sent, Int32(MSG_NOSIGNAL))
                // The server may answer (413) and close before reading a large body: stop sending then.
                if n <= 0 { if [EPIPE, ECONNRESET, EAGAIN, EWOULDBLOCK].contains(errno) { return }; throw Failure(description: "send: errno \(errno)") }
                sent += n
            }
        }
        var out = Data()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while !isComplete(out) {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { break }
            out.append(buffer, count: n)
        }
        return out
    }

    /// Whether a response has all its body (by Content-Length or the last chunk), so that a server that keeps
    /// the connection open (it is still draining a body it refused) does not keep the client waiting.
    public static func isComplete(_ raw: Data) -> Bool {
        guard let split = raw.range(of: Data("\r\n\r\n".utf8)) else { return false }
        let head = String(decoding: raw[..<split.lowerBound], as: UTF8.self).lowercased()
        if let line = head.components(separatedBy: "\r\n").first(where: { $0.hasPrefix("content-length:") }),
           let length = Int(line.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) {
            return raw.count - split.upperBound >= length
        }
        if head.contains("transfer-encoding: chunked") { return raw.suffix(5) == Data("0\r\n\r\n".utf8) }
        return false
    }

    public static func parse(_ raw: Data) throws -> HTTPReply {
        guard let split = raw.range(of: Data("\r\n\r\n".utf8)) else { throw Failure(description: "no HTTP response (\(raw.count) bytes)") }
        let lines = String(decoding: raw[..<split.lowerBound], as: UTF8.self).components(separatedBy: "\r\n")
        let status = Int(lines.first?.split(separator: " ").dropFirst().first ?? "") ?? 0
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[String(line[..<colon])] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        var body = Data(raw[split.upperBound...])
        if headers.first(where: { $0.key.lowercased() == "transfer-encoding" })?.value.lowercased() == "chunked" {
            var decoded = Data(), rest = body[...]
            while let lineEnd = rest.range(of: Data("\r\n".utf8)) {
                let size = Int(String(decoding: rest[..<lineEnd.lowerBound], as: UTF8.self).split(separator: ";")[0], radix: 16) ?? 0
                if size == 0 { break }
                let start = lineEnd.upperBound
                decoded.append(rest[start..<(start + size)])
                rest = rest[(start + size + 2)...]
            }
            body = decoded
        }
        return HTTPReply(status: status, headers: headers, data: body)
    }
}
