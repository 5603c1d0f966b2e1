import Foundation

/// One token matched literally in the text instead of going through BPE.
struct AddedToken {
    var content: String
    var id: Int
    /// true: matched in normalized (lowercased) text; false: matched in the raw text.
    var normalized: Bool
}

/// Everything read from a tokenizer folder, with transformers 5.x's precedence rules applied.
struct TokenizerFiles {
    var vocab: [String: Int] = [:]
    var merges: [(String, String)] = []
    /// File(s) the vocabulary and merges came from, for error messages.
    var modelSource = ""
    var addedTokens: [AddedToken] = []
    var bosId = 0
    var eosId = 0
    var padId = 0
    var vocabularySize = 0
    var modelMaxLength = 77

    init(directory: URL) throws {
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: directory.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw CLIPTokenizerError.missingFile(directory: directory.path, what: "the tokenizer folder itself")
        }
        let vocabURL = directory.appendingPathComponent("vocab.json")
        let mergesURL = directory.appendingPathComponent("merges.txt")
        let jsonURL = directory.appendingPathComponent("tokenizer.json")
        let configURL = directory.appendingPathComponent("tokenizer_config.json")
        let mapURL = directory.appendingPathComponent("special_tokens_map.json")
        let hasVocab = fm.fileExists(atPath: vocabURL.path)
        let hasMerges = fm.fileExists(atPath: mergesURL.path)

        // Added tokens listed explicitly (tokenizer_config's added_tokens_decoder, or tokenizer.json's added_tokens).
        var listed: [AddedToken] = []
        var jsonAddedTokens: [AddedToken] = []
        if hasVocab && hasMerges {
            vocab = try Self.readVocab(vocabURL)
            merges = try Self.readMerges(mergesURL)
            modelSource = "\(vocabURL.path) / \(mergesURL.path)"
        } else if fm.fileExists(atPath: jsonURL.path) {
            jsonAddedTokens = try readTokenizerJSON(jsonURL)
            modelSource = jsonURL.path
        } else {
            let what: String
            if hasVocab {
                what = "merges.txt (vocab.json is there) or tokenizer.json"
            } else if hasMerges {
                what = "vocab.json (merges.txt is there) or tokenizer.json"
            } else {
                what = "vocab.json + merges.txt, or tokenizer.json,"
            }
            throw CLIPTokenizerError.missingFile(directory: directory.path, what: what)
        }

        // Named special tokens: CLIPTokenizer's defaults, then tokenizer_config.json, then (legacy
        // folders without added_tokens_decoder) special_tokens_map.json, which wins over the config.
        var named: [(key: String, content: String, normalized: Bool)] = [
            ("bos_token", "<|startoftext|>", false), ("eos_token", "<|endoftext|>", false),
            ("unk_token", "<|endoftext|>", false), ("pad_token", "<|endoftext|>", false),
        ]
        let config = fm.fileExists(atPath: configURL.path) ? try Self.readObject(configURL) : nil
        if let config {
            try Self.override(&named, from: config, path: configURL.path)
            if let maxLength = config["model_max_length"] as? NSNumber {
                // transformers writes 1e30 for "no limit"; CLIP's text model has 77 positions.
                let value = maxLength.doubleValue
                if value >= 2 && value <= 1_000_000 { modelMaxLength = Int(value) }
            }
        }
        if let decoder = config?["added_tokens_decoder"] {
            guard let entries = decoder as? [String: Any] else {
                throw CLIPTokenizerError.invalidContent(path: configURL.path, reason: "added_tokens_decoder is not an object")
            }
            for (key, value) in entries {
                guard let id = Int(key), let entry = value as? [String: Any] else {
                    throw CLIPTokenizerError.invalidContent(path: configURL.path, reason: "added_tokens_decoder entry \(key) is malformed")
                }
                listed.append(try Self.addedToken(entry, id: id, path: configURL.path))
            }
            listed.sort { $0.id < $1.id }
        } else {
            if fm.fileExists(atPath: mapURL.path) {
                try Self.override(&named, from: try Self.readObject(mapURL), path: mapURL.path)
            }
            listed = jsonAddedTokens
        }

        // Listed tokens first; a named token only adds what is not listed yet (first one wins, in
        // transformers' order bos, eos, unk, pad).
        addedTokens = listed
        for token in named where !addedTokens.contains(where: { $0.content == token.content }) {
            guard let id = vocab[token.content] else {
                throw CLIPTokenizerError.invalidContent(
                    path: modelSource, reason: "\(token.key) \(token.content.debugDescription) is not in the vocabulary")
            }
            addedTokens.append(AddedToken(content: token.content, id: id, normalized: token.normalized))
        }
        func id(of key: String) -> Int {
            let content = named.first { $0.key == key }?.content ?? ""
            return addedTokens.first { $0.content == content }?.id ?? 0  // always present: added above
        }
        bosId = id(of: "bos_token")
        eosId = id(of: "eos_token")
        padId = id(of: "pad_token")
        vocabularySize = max(vocab.values.max() ?? -1, addedTokens.map(\.id).max() ?? -1) + 1
    }

    // MARK: - Files

    private static func readData(_ url: URL) throws -> Data {
        do {
            return try Data(contentsOf: url)
        } catch {
            throw CLIPTokenizerError.unreadableFile(path: url.path, reason: error.localizedDescription)
        }
    }

    private static func readObject(_ url: URL) throws -> [String: Any] {
        let parsed: Any
        do {
            parsed = try JSONSerialization.jsonObject(with: readData(url))
        } catch let error as CLIPTokenizerError {
            throw error
        } catch {
            throw CLIPTokenizerError.unreadableFile(path: url.path, reason: "not valid JSON (\(error))")
        }
        guard let object = parsed as? [String: Any] else {
            throw CLIPTokenizerError.invalidContent(path: url.path, reason: "top level is not a JSON object")
        }
        return object
    }

    private static func readVocab(_ url: URL) throws -> [String: Int] {
        let data = try readData(url)
        // Foundation's JSONDecoder is slow on CLIP's 49k entries and dominated start-up; vocab.json is one flat
        // object, which a dedicated parser reads far faster (BENCHMARKS.md). Anything else goes to Foundation.
        if let vocab = FlatVocabParser.parse(data) { return vocab }
        do {
            return try JSONDecoder().decode([String: Int].self, from: data)
        } catch {
            throw CLIPTokenizerError.unreadableFile(path: url.path, reason: "not a JSON object of token -> id (\(error))")
        }
    }

    /// merges.txt: optional "#version" line, then one "left right" pair per line, best rank first.
    private static func readMerges(_ url: URL) throws -> [(String, String)] {
        guard let text = String(data: try readData(url), encoding: .utf8) else {
            throw CLIPTokenizerError.unreadableFile(path: url.path, reason: "not UTF-8 text")
        }
        var merges: [(String, String)] = []
        merges.reserveCapacity(50_000)
        // Split on "\n" scalars (a "\r\n" pair is one Character, so Character splitting would miss it).
        for (number, rawLine) in text.unicodeScalars.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            var line = Substring(rawLine)
            if line.hasSuffix("\r") { line = line.dropLast() }
            if line.isEmpty || (number == 0 && line.hasPrefix("#version")) { continue }
            let parts = line.split(separator: " ", omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                throw CLIPTokenizerError.invalidContent(
                    path: url.path, reason: "line \(number + 1) is not \"left right\": \(String(line).debugDescription)")
            }
            merges.append((String(parts[0]), String(parts[1])))
        }
        return merges
    }

    /// tokenizer.json: model.vocab, model.merges ("a b" strings or [a, b] pairs) and added_tokens.
    private mutating func readTokenizerJSON(_ url: URL) throws -> [AddedToken] {
        let path = url.path
        let root = try Self.readObject(url)
        guard let model = root["model"] as? [String: Any] else {
            throw CLIPTokenizerError.invalidContent(path: path, reason: "no \"model\" object")
        }
        if let type = model["type"] as? String, type != "BPE" {
            throw CLIPTokenizerError.unsupported(path: path, reason: "model type \(type) (CLIP uses BPE)")
        }
        guard model["end_of_word_suffix"] as? String == "</w>" else {
            throw CLIPTokenizerError.unsupported(
                path: path, reason: "model.end_of_word_suffix is \(String(describing: model["end_of_word_suffix"] ?? "missing")), CLIP uses \"</w>\"")
        }
        guard let vocabObject = model["vocab"] as? [String: Any] else {
            throw CLIPTokenizerError.invalidContent(path: path, reason: "model.vocab is not an object of token -> id")
        }
        vocab.reserveCapacity(vocabObject.count)
        for (token, value) in vocabObject {
            guard let id = (value as? NSNumber)?.intValue else {
                throw CLIPTokenizerError.invalidContent(path: path, reason: "model.vocab[\(token.debugDescription)] is not an integer")
            }
            vocab[token] = id
        }
        guard let mergeList = model["merges"] as? [Any] else {
            throw CLIPTokenizerError.invalidContent(path: path, reason: "model.merges is not an array")
        }
        merges.reserveCapacity(mergeList.count)
        for (index, entry) in mergeList.enumerated() {
            if let text = entry as? String {
                let parts = text.split(separator: " ", omittingEmptySubsequences: false)
                if parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty {
                    merges.append((String(parts[0]), String(parts[1])))
                    continue
                }
            } else if let pair = entry as? [Any], pair.count == 2, let a = pair[0] as? String, let b = pair[1] as? String {
                merges.append((a, b))
                continue
            }
            throw CLIPTokenizerError.invalidContent(
                path: path, reason: "model.merges[\(index)] is neither \"a b\" nor [\"a\", \"b\"]: \(entry)")
        }
        var added: [AddedToken] = []
        for (index, value) in ((root["added_tokens"] as? [Any]) ?? []).enumerated() {
            guard let entry = value as? [String: Any], let id = (entry["id"] as? NSNumber)?.intValue else {
                throw CLIPTokenizerError.invalidContent(path: path, reason: "added_tokens[\(index)] has no integer id")
            }
            added.append(try Self.addedToken(entry, id: id, path: path))
        }
        return added
    }

    // MARK: - Token descriptions

    /// Applies bos/eos/unk/pad values (a string or an AddedToken object) found in `object`.
    private static func override(_ named: inout [(key: String, content: String, normalized: Bool)],
                                 from object: [String: Any], path: String) throws {
        for i in named.indices {
            guard let value = object[named[i].key], !(value is NSNull) else { continue }
            if let text = value as? String {
                named[i].content = text
                named[i].normalized = false
            } else if let entry = value as? [String: Any] {
                let token = try addedToken(entry, id: -1, path: path)
                named[i].content = token.content
                named[i].normalized = token.normalized
            } else {
                throw CLIPTokenizerError.invalidContent(path: path, reason: "\(named[i].key) is neither a string nor a token object")
            }
        }
    }

    /// Reads an AddedToken object ({"content", "normalized", "lstrip", ...}).
    private static func addedToken(_ entry: [String: Any], id: Int, path: String) throws -> AddedToken {
        guard let content = entry["content"] as? String, !content.isEmpty else {
            throw CLIPTokenizerError.invalidContent(path: path, reason: "added token without \"content\": \(entry)")
        }
        for flag in ["lstrip", "rstrip", "single_word"] where (entry[flag] as? Bool) == true {
            // These change how the text around the token is cut; CLIP never sets them.
            throw CLIPTokenizerError.unsupported(path: path, reason: "added token \(content.debugDescription) has \(flag)=true")
        }
        return AddedToken(content: content, id: id, normalized: (entry["normalized"] as? Bool) ?? false)
    }
}

/// Parser for the one shape vocab.json has: `{"token": id, ...}` with JSON string escapes.
/// Returns nil on anything else, so the caller's JSONDecoder produces the error message.
enum FlatVocabParser {
    static func parse(_ data: Data) -> [String: Int]? {
        data.withUnsafeBytes { raw -> [String: Int]? in
            let b = raw.bindMemory(to: UInt8.self)
            var i = 0
            let n = b.count
            func skipSpace() { while i < n, b[i] == 0x20 || b[i] == 0x0A || b[i] == 0x0D || b[i] == 0x09 { i += 1 } }
            func hex4() -> UInt32? {
                guard i + 4 <= n else { return nil }
                var v: UInt32 = 0
                for _ in 0..<4 {
                    let c = b[i]
                    let d: UInt32
                    switch c {
                    case 0x30...0x39: d = UInt32(c - 0x30)
                    case 0x41...0x46: d = UInt32(c - 0x41 + 10)
                    case 0x61...0x66: d = UInt32(c - 0x61 + 10)
                    default: return nil
                    }
                    v = v << 4 | d
                    i += 1
                }
                return v
            }
            func string() -> String? {
                guard i < n, b[i] == 0x22 else { return nil }
                i += 1
                let start = i
                while i < n, b[i] != 0x22, b[i] != 0x5C { i += 1 }
                guard i < n else { return nil }
                if b[i] == 0x22 {  // no escapes: the common case
                    guard let s = String(validating: UnsafeBufferPointer(rebasing: b[start..<i]), as: UTF8.self) else { return nil }
                    i += 1
                    return s
                }
                var bytes = Array(b[start..<i])
                while i < n {
                    let c = b[i]
                    if c == 0x22 { i += 1; return String(validating: bytes, as: UTF8.self) }
                    if c != 0x5C { bytes.append(c); i += 1; continue }
                    i += 1
                    guard i < n else { return nil }
                    let e = b[i]
                    i += 1
                    switch e {
                    case 0x22, 0x5C, 0x2F: bytes.append(e)
                    case 0x62: bytes.append(0x08)
                    case 0x66: bytes.append(0x0C)
                    case 0x6E: bytes.append(0x0A)
                    case 0x72: bytes.append(0x0D)
                    case 0x74: bytes.append(0x09)
                    case 0x75:
                        guard var u = hex4() else { return nil }
                        if (0xD800..<0xDC00).contains(u) {
                            guard i + 1 < n, b[i] == 0x5C, b[i + 1] == 0x75 else { return nil }
                            i += 2
                            guard let low = hex4(), (0xDC00..<0xE000).contains(low) else { return nil }
                            u = 0x10000 + ((u - 0xD800) << 10) + (low - 0xDC00)
                        }
                        guard let scalar = Unicode.Scalar(u) else { return nil }
                        bytes.append(contentsOf: Array(String(Character(scalar)).utf8))
                    default: return nil
                    }
                }
                return nil
            }
            skipSpace()
            guard i < n, b[i] == 0x7B else { return nil }
            i += 1
            var vocab = [String: Int](minimumCapacity: n / 12)
            skipSpace()
            if i < n, b[i] == 0x7D { return vocab }
            while true {
                skipSpace()
                guard let key = string() else { return nil }
                skipSpace()
                guard i < n, b[i] == 0x3A else { return nil }
                i += 1
                skipSpace()
                let negative = i < n && b[i] == 0x2D
                if negative { i += 1 }
                var value = 0
                var digits = 0
                while i < n, b[i] >= 0x30, b[i] <= 0x39, digits < 18 { value = value * 10 + Int(b[i] - 0x30); i += 1; digits += 1 }
                // Fractions, exponents or overlong numbers go to JSONDecoder.
                guard digits > 0, i < n, b[i] != 0x2E, b[i] != 0x65, b[i] != 0x45, !(b[i] >= 0x30 && b[i] <= 0x39) else { return nil }
                // A repeated key: JSONDecoder rejects or keeps the last; defer to it.
                guard vocab.updateValue(negative ? -value : value, forKey: key) == nil else { return nil }
                skipSpace()
                guard i < n else { return nil }
                if b[i] == 0x2C { i += 1; continue }
                guard b[i] == 0x7D else { return nil }
                i += 1
                skipSpace()
                return i == n ? vocab : nil
            }
        }
    }
}
