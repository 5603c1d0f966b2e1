import Foundation

/// multipart/form-data bodies (OpenAI's image uploads): each part's name, file name and bytes.
struct MultipartForm {
    struct Part { let name: String; let filename: String?; let contentType: String?; let data: Data }
    let parts: [Part]

    subscript(_ name: String) -> Part? { parts.first { $0.name == name } }
    func text(_ name: String) -> String? { self[name].map { String(decoding: $0.data, as: UTF8.self) } }

    init(_ body: Data, contentType: String) throws {
        guard contentType.lowercased().hasPrefix("multipart/form-data"),
              let b = contentType.components(separatedBy: ";").lazy.map({ $0.trimmingCharacters(in: .whitespaces) })
                .first(where: { $0.lowercased().hasPrefix("boundary=") }) else {
            throw APIError.badRequest("the body must be multipart/form-data (with a boundary) holding the image", field: "image")
        }
        var boundary = String(b.dropFirst("boundary=".count))
        if boundary.hasPrefix("\"") && boundary.hasSuffix("\"") && boundary.count >= 2 { boundary = String(boundary.dropFirst().dropLast()) }
        let delimiter = Data("--\(boundary)".utf8)
        var parts: [Part] = []
        var cursor = body.startIndex
        guard let first = body.range(of: delimiter, in: cursor..<body.endIndex) else {
            throw APIError.badRequest("the multipart body has no part (boundary \(boundary) not found)", field: nil)
        }
        cursor = first.upperBound
        let crlf = Data("\r\n".utf8), headerEnd = Data("\r\n\r\n".utf8)
        while true {
            // "--" after a delimiter ends the body.
            if body[cursor...].starts(with: Data("--".utf8)) { break }
            guard body[cursor...].starts(with: crlf) else { throw APIError.badRequest("malformed multipart body", field: nil) }
            cursor += 2
            guard let hEnd = body.range(of: headerEnd, in: cursor..<body.endIndex) else {
                throw APIError.badRequest("malformed multipart body: a part without headers", field: nil)
            }
            let headers = String(decoding: body[cursor..<hEnd.lowerBound], as: UTF8.self)
            cursor = hEnd.upperBound
            guard let next = body.range(of: crlf + delimiter, in: cursor..<body.endIndex) else {
                throw APIError.badRequest("malformed multipart body: a part does not end", field: nil)
            }
            let data = body[cursor..<next.lowerBound]
            cursor = next.upperBound
            var name: String?, filename: String?, type: String?
            for line in headers.components(separatedBy: "\r\n") {
                let lower = line.lowercased()
                if lower.hasPrefix("content-disposition:") {
                    name = Self.attribute("name", in: line)
                    filename = Self.attribute("filename", in: line)
                } else if lower.hasPrefix("content-type:") {
                    type = line.dropFirst("content-type:".count).trimmingCharacters(in: .whitespaces)
                }
            }
            guard let name else { throw APIError.badRequest("malformed multipart body: a part without a name", field: nil) }
            parts.append(Part(name: name, filename: filename, contentType: type, data: Data(data)))
        }
        self.parts = parts
    }

    private static func attribute(_ key: String, in line: String) -> String? {
        for piece in line.components(separatedBy: ";").dropFirst() {
            let kv = piece.trimmingCharacters(in: .whitespaces)
            guard kv.lowercased().hasPrefix("\(key)=") else { continue }
            var v = String(kv.dropFirst(key.count + 1))
            if v.hasPrefix("\"") && v.hasSuffix("\"") && v.count >= 2 { v = String(v.dropFirst().dropLast()) }
            return v
        }
        return nil
    }
}
