import Foundation

/// Token ids of one prompt, padded / truncated to a fixed length.
public struct TokenizedPrompt: Sendable, Equatable {
    /// BOS, content, EOS, then padding: exactly `maxLength` ids.
    public var ids: [Int]
    /// 1 for BOS, content and EOS, 0 for padding.
    public var attentionMask: [Int]
    /// Tokens the prompt needs with BOS and EOS, before truncation.
    public var tokenCount: Int
    /// Content tokens cut off by truncation (0 when the prompt fits).
    public var droppedTokens: Int
}

/// CLIP's byte-level BPE tokenizer, identical to transformers 5.x `CLIPTokenizer.from_pretrained(folder)`.
public struct CLIPTokenizer: Sendable {
    /// Id of the beginning-of-text token (`<|startoftext|>`).
    public let bosTokenId: Int
    /// Id of the end-of-text token (`<|endoftext|>`).
    public let eosTokenId: Int
    /// Id used for padding (49407 for OpenAI CLIP, 0 = "!" for Stable Diffusion 2).
    public let padTokenId: Int
    /// Number of ids (vocabulary plus added tokens beyond it).
    public let vocabularySize: Int
    /// `model_max_length` of tokenizer_config.json, or 77 (CLIP's context) when absent or unbounded.
    public let modelMaxLength: Int

    private let bpe: ByteLevelBPE
    /// Added tokens matched in the raw text (normalized: false) and in the normalized text (normalized: true).
    private let rawTokens: LiteralMatcher
    private let normalizedTokens: LiteralMatcher

    /// Loads `vocab.json` + `merges.txt` (with `tokenizer_config.json` / `special_tokens_map.json` when present),
    /// or `tokenizer.json` when the folder has no vocab.json / merges.txt.
    public init(directory: URL) throws {
        // unCLIP folders hold the same tokenizer twice (prior_tokenizer, tokenizer): build it once per process.
        let key = TokenizerCache.key(directory)
        if let key, let cached = TokenizerCache.lookup(key) { self = cached; return }
        try self.init(files: try TokenizerFiles(directory: directory))
        if let key { TokenizerCache.insert(key, self) }
    }

    private init(files: TokenizerFiles) throws {
        bpe = try ByteLevelBPE(vocab: files.vocab, merges: files.merges, source: files.modelSource)
        bosTokenId = files.bosId
        eosTokenId = files.eosId
        padTokenId = files.padId
        vocabularySize = files.vocabularySize
        modelMaxLength = files.modelMaxLength
        rawTokens = LiteralMatcher(files.addedTokens.filter { !$0.normalized }.map { (Array($0.content.unicodeScalars), $0.id) })
        normalizedTokens = LiteralMatcher(files.addedTokens.filter { $0.normalized }.map {
            // Normalized added tokens are matched in normalized text, so their content is normalized too.
            let scalars = Array($0.content.unicodeScalars)
            return (normalizeCLIP(scalars[...]), $0.id)
        })
    }

    /// BPE ids of `text` without BOS / EOS (special tokens typed in the text still map to their ids).
    public func encode(_ text: String) -> [Int] {
        let scalars = Array(text.unicodeScalars)
        var ids = [Int]()
        ids.reserveCapacity(scalars.count / 3 + 4)
        var bytes = [UInt8]()
        for piece in rawTokens.split(scalars, 0..<scalars.count) {
            switch piece {
            case let .token(id):
                ids.append(id)
            case let .text(range):
                let normalized = normalizeCLIP(scalars[range])
                for inner in normalizedTokens.split(normalized, 0..<normalized.count) {
                    switch inner {
                    case let .token(id):
                        ids.append(id)
                    case let .text(innerRange):
                        forEachPreToken(normalized, innerRange) { word in
                            bytes.removeAll(keepingCapacity: true)
                            for scalar in normalized[word] { appendUTF8(scalar, to: &bytes) }
                            bpe.encodeWord(bytes, into: &ids)
                        }
                    }
                }
            }
        }
        return ids
    }

    /// Tokenizes like `tokenizer(text, padding="max_length", max_length=maxLength, truncation=True)`:
    /// BOS + content + EOS, content cut to `maxLength - 2`, then padded with `padTokenId`.
    public func callAsFunction(_ text: String, maxLength: Int = 77) -> TokenizedPrompt {
        precondition(maxLength >= 2, "maxLength must leave room for BOS and EOS (got \(maxLength))")
        let content = encode(text)
        let kept = min(content.count, maxLength - 2)
        var ids = [Int]()
        ids.reserveCapacity(maxLength)
        ids.append(bosTokenId)
        ids.append(contentsOf: content[0..<kept])
        ids.append(eosTokenId)
        let used = ids.count
        ids.append(contentsOf: repeatElement(padTokenId, count: maxLength - used))
        var mask = [Int](repeating: 1, count: used)
        mask.append(contentsOf: repeatElement(0, count: maxLength - used))
        return TokenizedPrompt(ids: ids, attentionMask: mask, tokenCount: content.count + 2,
                               droppedTokens: content.count - kept)
    }
}

@inline(__always)
private func appendUTF8(_ scalar: Unicode.Scalar, to bytes: inout [UInt8]) {
    let v = scalar.value
    switch v {
    case 0..<0x80:
        bytes.append(UInt8(v))
    case 0x80..<0x800:
        bytes.append(UInt8(0xC0 | (v >> 6)))
        bytes.append(UInt8(0x80 | (v & 0x3F)))
    case 0x800..<0x10000:
        bytes.append(UInt8(0xE0 | (v >> 12)))
        bytes.append(UInt8(0x80 | ((v >> 6) & 0x3F)))
        bytes.append(UInt8(0x80 | (v & 0x3F)))
    default:
        bytes.append(UInt8(0xF0 | (v >> 18)))
        bytes.append(UInt8(0x80 | ((v >> 12) & 0x3F)))
        bytes.append(UInt8(0x80 | ((v >> 6) & 0x3F)))
        bytes.append(UInt8(0x80 | (v & 0x3F)))
    }
}

/// Tokenizers already built in this process, keyed by the bytes of the files they were built from.
private enum TokenizerCache {
    nonisolated(unsafe) static var entries: [(Data, CLIPTokenizer)] = []
    static let lock = NSLock()
    static let fileNames = ["vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]

    /// All tokenizer files' bytes with their names, or nil when one cannot be read (the full load reports it).
    static func key(_ directory: URL) -> Data? {
        var key = Data()
        for name in fileNames {
            let url = directory.appendingPathComponent(name)
            guard FileManager.default.fileExists(atPath: url.path) else { continue }
            guard let data = try? Data(contentsOf: url) else { return nil }
            key.append(contentsOf: Array("\(name):\(data.count):".utf8))
            key.append(data)
        }
        return key
    }

    static func lookup(_ key: Data) -> CLIPTokenizer? {
        lock.lock(); defer { lock.unlock() }
        return entries.first { $0.0 == key }?.1
    }

    static func insert(_ key: Data, _ tokenizer: CLIPTokenizer) {
        lock.lock(); defer { lock.unlock() }
        if entries.count >= 4 { entries.removeFirst() }
        entries.append((key, tokenizer))
    }
}
