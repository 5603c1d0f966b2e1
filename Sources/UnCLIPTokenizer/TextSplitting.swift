import Foundation

// Text handling of transformers 5.x CLIPTokenizer (tokenizers backend), in pipeline order:
//   1. added (special) tokens with normalized=false are cut out of the raw text;
//   2. normalizer: NFC -> Replace(\s+ -> " ") -> Lowercase (per scalar, full mapping, no context);
//   3. added tokens with normalized=true are cut out of the normalized text;
//   4. pre-tokenizer Split(CLIP regex, behavior removed, invert) keeps only the regex matches:
//        <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
//   5. pre-tokenizer ByteLevel(use_regex: true) splits each match again with GPT-2's regex
//        's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//      This only changes a "<|startoftext|>" / "<|endoftext|>" match (typed in another case, so
//      step 1 missed it): it becomes "<|", "startoftext", "|>".
// \s is Unicode White_Space and \p{L} / \p{N} are general categories (oniguruma's definitions).

/// Classes used by both regexes.
enum ScalarClass: UInt8 {
    case letter, number, space, other
}

/// ASCII classes, so the common case is one table load.
private let asciiClasses: [ScalarClass] = (0..<128).map { v in
    switch v {
    case 0x09...0x0D, 0x20: return .space
    case 0x30...0x39: return .number
    case 0x41...0x5A, 0x61...0x7A: return .letter
    default: return .other
    }
}

@inline(__always)
func classify(_ scalar: Unicode.Scalar) -> ScalarClass {
    let v = scalar.value
    if v < 128 { return asciiClasses[Int(v)] }
    let properties = scalar.properties
    if properties.isWhitespace { return .space }
    switch properties.generalCategory {
    case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
        return .letter
    case .decimalNumber, .letterNumber, .otherNumber:
        return .number
    default:
        return .other
    }
}

/// CLIP's normalizer: NFC, whitespace runs to one space, lowercase.
func normalizeCLIP(_ scalars: ArraySlice<Unicode.Scalar>) -> [Unicode.Scalar] {
    // Every scalar below U+0300 is NFC-stable and cannot compose with its neighbour
    // (composition needs a combining mark or a Hangul jamo), so NFC is skipped for such text.
    var composed: [Unicode.Scalar]
    if scalars.allSatisfy({ $0.value < 0x300 }) {
        composed = Array(scalars)
    } else {
        var view = String.UnicodeScalarView()
        view.append(contentsOf: scalars)
        composed = Array(String(view).precomposedStringWithCanonicalMapping.unicodeScalars)
    }
    var out = [Unicode.Scalar]()
    out.reserveCapacity(composed.count)
    var inSpace = false
    for scalar in composed {
        let v = scalar.value
        if v < 128 {
            if asciiClasses[Int(v)] == .space {
                if !inSpace { out.append(" ") }
                inSpace = true
                continue
            }
            inSpace = false
            // ASCII lowercase: set bit 5 of A-Z.
            out.append(v >= 0x41 && v <= 0x5A ? Unicode.Scalar(UInt8(v | 0x20)) : scalar)
            continue
        }
        let properties = scalar.properties
        if properties.isWhitespace {
            if !inSpace { out.append(" ") }
            inSpace = true
            continue
        }
        inSpace = false
        if properties.changesWhenLowercased {
            // Full (possibly multi-scalar) mapping, e.g. U+0130 -> "i" U+0307, as Rust's char::to_lowercase.
            out.append(contentsOf: properties.lowercaseMapping.unicodeScalars)
        } else {
            out.append(scalar)
        }
    }
    return out
}

/// Literal tokens cut out of text before BPE (leftmost match, longest on ties, as tokenizers' Aho-Corasick).
struct LiteralMatcher: Sendable {
    private let patterns: [(scalars: [Unicode.Scalar], id: Int)]
    private let firstScalars: Set<UInt32>

    init(_ tokens: [(scalars: [Unicode.Scalar], id: Int)]) {
        // Longest first, so the first pattern matching at a position is the longest one.
        patterns = tokens.filter { !$0.scalars.isEmpty }.sorted { $0.scalars.count > $1.scalars.count }
        firstScalars = Set(patterns.map { $0.scalars[0].value })
    }

    var isEmpty: Bool { patterns.isEmpty }

    enum Piece {
        case text(Range<Int>)
        case token(Int)
    }

    /// Splits `text[range]` into text ranges and matched token ids, in order.
    func split(_ text: [Unicode.Scalar], _ range: Range<Int>) -> [Piece] {
        if patterns.isEmpty { return [.text(range)] }
        var pieces = [Piece]()
        var start = range.lowerBound
        var i = range.lowerBound
        search: while i < range.upperBound {
            if firstScalars.contains(text[i].value) {
                for pattern in patterns where i + pattern.scalars.count <= range.upperBound {
                    if text[i..<(i + pattern.scalars.count)].elementsEqual(pattern.scalars) {
                        if start < i { pieces.append(.text(start..<i)) }
                        pieces.append(.token(pattern.id))
                        i += pattern.scalars.count
                        start = i
                        continue search
                    }
                }
            }
            i += 1
        }
        if start < range.upperBound { pieces.append(.text(start..<range.upperBound)) }
        return pieces
    }
}

private let startOfText = Array("<|startoftext|>".unicodeScalars)
private let endOfText = Array("<|endoftext|>".unicodeScalars)

@inline(__always)
private func hasPrefix(_ text: [Unicode.Scalar], at i: Int, end: Int, _ literal: [Unicode.Scalar]) -> Bool {
    i + literal.count <= end && text[i..<(i + literal.count)].elementsEqual(literal)
}

/// Length of a contraction ('s 't 're 've 'm 'll 'd) starting at `i`, or 0.
@inline(__always)
private func contractionLength(_ text: [Unicode.Scalar], at i: Int, end: Int) -> Int {
    guard text[i] == "'", i + 1 < end else { return 0 }
    switch text[i + 1] {
    case "s", "t", "m", "d":
        return 2
    case "r", "v":
        return i + 2 < end && text[i + 2] == "e" ? 3 : 0
    case "l":
        return i + 2 < end && text[i + 2] == "l" ? 3 : 0
    default:
        return 0
    }
}

/// End of the run of scalars of class `cls` starting at `i`.
@inline(__always)
private func runEnd(_ text: [Unicode.Scalar], from i: Int, end: Int, _ cls: ScalarClass) -> Int {
    var j = i + 1
    while j < end && classify(text[j]) == cls { j += 1 }
    return j
}

/// Calls `body` with each pre-token (range into `text`) of the CLIP Split regex followed by
/// the GPT-2 ByteLevel regex, for normalized text.
func forEachPreToken(_ text: [Unicode.Scalar], _ range: Range<Int>, _ body: (Range<Int>) -> Void) {
    let end = range.upperBound
    var i = range.lowerBound
    while i < end {
        // Alternatives in regex order: the first that matches at i wins.
        if text[i] == "<" {
            if hasPrefix(text, at: i, end: end, startOfText) {
                splitGPT2(text, i..<(i + startOfText.count), body)
                i += startOfText.count
                continue
            }
            if hasPrefix(text, at: i, end: end, endOfText) {
                splitGPT2(text, i..<(i + endOfText.count), body)
                i += endOfText.count
                continue
            }
        }
        let contraction = contractionLength(text, at: i, end: end)
        if contraction > 0 {
            body(i..<(i + contraction))
            i += contraction
            continue
        }
        switch classify(text[i]) {
        case .letter:
            let j = runEnd(text, from: i, end: end, .letter)
            body(i..<j)
            i = j
        case .number:
            // [\p{N}]: one digit per pre-token.
            body(i..<(i + 1))
            i += 1
        case .other:
            let j = runEnd(text, from: i, end: end, .other)
            body(i..<j)
            i = j
        case .space:
            i += 1  // removed
        }
    }
}

/// GPT-2's regex on one CLIP match. A CLIP match has no whitespace, so the optional leading space
/// and the whitespace alternatives never apply. For letter / digit / punctuation / contraction
/// matches it returns the match unchanged; it only splits the special-token strings.
private func splitGPT2(_ text: [Unicode.Scalar], _ range: Range<Int>, _ body: (Range<Int>) -> Void) {
    let end = range.upperBound
    var i = range.lowerBound
    while i < end {
        let contraction = contractionLength(text, at: i, end: end)
        if contraction > 0 {
            body(i..<(i + contraction))
            i += contraction
            continue
        }
        let j = runEnd(text, from: i, end: end, classify(text[i]))
        body(i..<j)
        i = j
    }
}
