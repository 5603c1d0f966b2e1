import Foundation

/// Prints a JSON object on stdout with stable key order. Only the diagnostic tools (tokenize, encode-text,
/// embed-image, run-model, eval) print free-form dictionaries; commands on images and the store print
/// Codable records (`printJSON`).
func printJSONObject(_ object: Any) throws {
    let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
    writeStdout(String(decoding: data, as: UTF8.self) + "\n")
}
