import ArgumentParser
import Foundation
import UnCLIPTokenizer

/// Resolves the tokenizer folder: the option, then $UNCLIP_TOKENIZER, then the shipped CLIP vocabulary.
func tokenizerFolder(_ option: String?) -> URL {
    if let option { return URL(fileURLWithPath: option) }
    if let env = ProcessInfo.processInfo.environment["UNCLIP_TOKENIZER"] { return URL(fileURLWithPath: env) }
    return PackageLocation.weights.appendingPathComponent("clip-tokenizer")
}

/// Tokenizes, warning on stderr when CLIP's 77-token window cuts the prompt.
func tokenize(_ tokenizer: CLIPTokenizer, _ text: String, maxLength: Int = 77) -> TokenizedPrompt {
    let t = tokenizer(text, maxLength: maxLength)
    if t.droppedTokens > 0 {
        warn("warning: the prompt is \(t.tokenCount) tokens; CLIP reads \(maxLength), so the last \(t.droppedTokens) were dropped: \"\(text.prefix(60))…\"")
    }
    return t
}

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a prompt's CLIP token ids and token count as JSON.",
        discussion: """
        CLIP reads at most 77 tokens, start and end markers included. Use this to check how long a prompt is
        before generating: "token_count" is the untruncated length, "dropped_tokens" what truncation removes.
        """)

    @Argument(help: "The text to tokenize.") var text: String

    @Option(help: "Tokenizer folder (vocab.json + merges.txt, or tokenizer.json). Default: $UNCLIP_TOKENIZER, else the shipped CLIP vocabulary.") var tokenizer: String?

    @Option(help: "Context length (CLIP: 77).") var maxLength = 77

    @Flag(help: "Also print the padded ids and attention mask, as fed to the text encoder.") var padded = false

    func validate() throws {
        guard maxLength >= 2 else { throw ValidationError("--max-length must be at least 2 (start and end markers)") }
    }

    func run() throws {
        let tok = try CLIPTokenizer(directory: tokenizerFolder(tokenizer))
        let t = tokenize(tok, text, maxLength: maxLength)
        let used = t.attentionMask.reduce(0, +)
        struct Tokens: Encodable {
            var ids: [Int], token_count: Int, dropped_tokens: Int, truncated: Bool, max_length: Int
            /// With --padded: the model's input (padded to max_length) and its mask.
            var input_ids: [Int]?, attention_mask: [Int]?
        }
        try printJSON(Tokens(ids: Array(t.ids.prefix(used)), token_count: t.tokenCount, dropped_tokens: t.droppedTokens,
                             truncated: t.droppedTokens > 0, max_length: maxLength, input_ids: padded ? t.ids : nil,
                             attention_mask: padded ? t.attentionMask : nil))
    }
}
