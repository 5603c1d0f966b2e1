import Foundation

/// Prints a JSON object on stdout with stable key order. Only `eval shapes` (a research report with nested
/// per-attribute tables) prints a free-form dictionary; every other command prints Codable records (`printJSON`).
func printJSONObject(_ object: Any) throws {
    let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
    writeStdout(String(decoding: data, as: UTF8.self) + "\n")
}
