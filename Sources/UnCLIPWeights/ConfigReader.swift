import Foundation

/// A key of a config.json, by its name in the file.
public struct ConfigKey: CodingKey {
    public let stringValue: String
    public var intValue: Int? { nil }
    public init(_ string: String) { stringValue = string }
    public init?(stringValue: String) { self.stringValue = stringValue }
    public init?(intValue: Int) { nil }
}

/// Reads a diffusers / transformers config.json key by key, each with the default its Python class gives it.
///
/// Their configs may leave out any key, so every config type decodes "this key, or the class default";
/// this reader says that once, and a config's `init(from:)` names each key once, next to its property
/// (no CodingKeys enum to keep in step). `null` counts as absent, as in diffusers, except through `nullable`.
public struct ConfigReader {
    public let container: KeyedDecodingContainer<ConfigKey>

    public init(_ decoder: Decoder) throws { container = try decoder.container(keyedBy: ConfigKey.self) }

    /// The value of `key`, or `fallback` when it is missing or null.
    public func callAsFunction<T: Decodable>(_ key: String, _ fallback: T) throws -> T {
        try optional(key) ?? fallback
    }

    /// The value of `key`, or nil when it is missing or null.
    public func optional<T: Decodable>(_ key: String) throws -> T? {
        try container.decodeIfPresent(T.self, forKey: ConfigKey(key))
    }

    /// For keys whose `null` is a setting of its own (diffusers' `mid_block_type: null` drops the mid block):
    /// `fallback` only when the key is missing, nil when it is null. A value outside `allowed` (when given)
    /// is a ConfigValueError.
    public func nullable<T: Decodable & Equatable>(_ key: String, _ fallback: T?, allowed: [T]? = nil) throws -> T? {
        guard container.contains(ConfigKey(key)) else { return fallback }
        let value: T? = try optional(key)
        if let value, let allowed, !allowed.contains(value) {
            throw ConfigValueError(key: key, value: "\(value)", allowed: allowed.map { "\($0)" } + ["null"])
        }
        return value
    }

    /// Refuses a value of `key` outside `allowed` (nil: missing or null). For keys that select computations this
    /// implementation does not do: refusing them beats computing something else.
    public func require<T: Decodable & Equatable>(_ key: String, _ type: T.Type, in allowed: [T?]) throws {
        let value: T? = try optional(key)
        guard allowed.contains(where: { $0 == value }) else {
            throw ConfigValueError(key: key, value: value.map { "\($0)" } ?? "null", allowed: allowed.map { $0.map { "\($0)" } ?? "null" })
        }
    }
}

/// Thrown by config types for a value they do not know (e.g. an unknown activation).
public struct ConfigValueError: Error, CustomStringConvertible {
    public let key: String
    public let value: String
    public let allowed: [String]
    public init(key: String, value: String, allowed: [String]) { self.key = key; self.value = value; self.allowed = allowed }
    public var description: String { "unknown \(key) '\(value)' (supported: \(allowed.joined(separator: ", ")))" }
}
