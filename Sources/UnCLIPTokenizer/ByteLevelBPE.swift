import Foundation

/// Byte-level BPE with CLIP's "</w>" end-of-word suffix, working on integer ids.
///
/// A word (one pre-token, as UTF-8 bytes) starts as one symbol per byte, the last one carrying
/// "</w>"; then the adjacent pair with the lowest merge rank (leftmost on ties) is merged until no
/// pair has a rank. This is what tokenizers' BPE model does with its priority queue.
final class ByteLevelBPE: @unchecked Sendable {
    /// Vocabulary id of each byte's character (GPT-2 `bytes_to_unicode`), and of that character + "</w>".
    private let byteIds: [Int32]
    private let byteEndIds: [Int32]
    /// (left id << 32 | right id) -> (rank << 32 | merged id). Packing rank in the high half lets
    /// the merge loop compare one integer: smaller value = smaller rank.
    private let merges: [UInt64: UInt64]

    // Words repeat a lot across prompts; the cache makes a repeated word one dictionary lookup.
    // Guarded by a lock because the tokenizer is a Sendable value shared across threads.
    private let lock = NSLock()
    private var cache: [[UInt8]: [Int32]] = [:]
    private static let cacheLimit = 20_000

    /// The 256 characters GPT-2 / CLIP use to spell bytes (printable ones map to themselves).
    static let byteCharacters: [Unicode.Scalar] = {
        var bytes = Array(33...126) + Array(161...172) + Array(174...255)
        var chars = bytes
        var extra = 0
        for b in 0..<256 where !bytes.contains(b) {
            bytes.append(b)
            chars.append(256 + extra)
            extra += 1
        }
        var table = [Unicode.Scalar](repeating: " ", count: 256)
        for (b, c) in zip(bytes, chars) {
            // c < 324: always a valid scalar.
            table[b] = Unicode.Scalar(UInt32(c))!
        }
        return table
    }()

    /// Builds the id tables from the vocabulary and the ordered merges; `source` names the files for errors.
    init(vocab: [String: Int], merges mergeList: [(String, String)], source: String) throws {
        var byteIds = [Int32](repeating: 0, count: 256)
        var byteEndIds = [Int32](repeating: 0, count: 256)
        for b in 0..<256 {
            let char = String(Self.byteCharacters[b])
            guard let id = vocab[char], let endId = vocab[char + "</w>"] else {
                throw CLIPTokenizerError.invalidContent(
                    path: source, reason: "vocabulary lacks the byte token \(char.debugDescription) or \((char + "</w>").debugDescription)")
            }
            byteIds[b] = Int32(id)
            byteEndIds[b] = Int32(endId)
        }
        var merges = [UInt64: UInt64](minimumCapacity: mergeList.count)
        for (rank, (a, b)) in mergeList.enumerated() {
            guard let left = vocab[a], let right = vocab[b] else {
                throw CLIPTokenizerError.invalidContent(
                    path: source, reason: "merge \(rank + 1) (\"\(a) \(b)\") uses a token missing from the vocabulary")
            }
            guard let merged = vocab[a + b] else {
                throw CLIPTokenizerError.invalidContent(
                    path: source, reason: "merge \(rank + 1) (\"\(a) \(b)\"): result \"\(a + b)\" is not in the vocabulary")
            }
            let key = UInt64(UInt32(left)) << 32 | UInt64(UInt32(right))
            // A repeated pair takes its last rank, as tokenizers' (and open_clip's) dict building does.
            merges[key] = UInt64(rank) << 32 | UInt64(UInt32(merged))
        }
        self.byteIds = byteIds
        self.byteEndIds = byteEndIds
        self.merges = merges
    }

    /// Appends the ids of one word (its UTF-8 bytes) to `out`.
    func encodeWord(_ bytes: [UInt8], into out: inout [Int]) {
        guard !bytes.isEmpty else { return }
        lock.lock()
        let cached = cache[bytes]
        lock.unlock()
        if let cached {
            for id in cached { out.append(Int(id)) }
            return
        }
        let ids = merge(bytes)
        lock.lock()
        if cache.count >= Self.cacheLimit { cache.removeAll(keepingCapacity: true) }
        cache[bytes] = ids
        lock.unlock()
        for id in ids { out.append(Int(id)) }
    }

    private static let noMerge = UInt64.max

    @inline(__always)
    private func pairValue(_ left: Int32, _ right: Int32) -> UInt64 {
        merges[UInt64(UInt32(left)) << 32 | UInt64(UInt32(right))] ?? Self.noMerge
    }

    private func merge(_ bytes: [UInt8]) -> [Int32] {
        var symbols = [Int32]()
        symbols.reserveCapacity(bytes.count)
        for (i, b) in bytes.enumerated() {
            symbols.append(i == bytes.count - 1 ? byteEndIds[Int(b)] : byteIds[Int(b)])
        }
        // pairs[i] describes (symbols[i], symbols[i + 1]).
        var pairs = [UInt64]()
        pairs.reserveCapacity(max(symbols.count - 1, 0))
        for i in 0..<max(symbols.count - 1, 0) {
            pairs.append(pairValue(symbols[i], symbols[i + 1]))
        }
        while !pairs.isEmpty {
            var best = 0
            var bestValue = pairs[0]
            for i in 1..<pairs.count where pairs[i] < bestValue {
                best = i
                bestValue = pairs[i]
            }
            if bestValue == Self.noMerge { break }
            symbols[best] = Int32(truncatingIfNeeded: bestValue & 0xFFFF_FFFF)
            symbols.remove(at: best + 1)
            pairs.remove(at: best)
            if best > 0 { pairs[best - 1] = pairValue(symbols[best - 1], symbols[best]) }
            if best < pairs.count { pairs[best] = pairValue(symbols[best], symbols[best + 1]) }
        }
        return symbols
    }
}
