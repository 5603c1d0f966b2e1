import Foundation

/// Timestamps as every backend stores them: UTC ISO 8601 with milliseconds, which sort as text.
public enum StoreTime {
    private static let formatter: ISO8601DateFormatter = {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        f.timeZone = TimeZone(identifier: "UTC")
        return f
    }()

    /// Now, as stored: UTC ISO 8601 with milliseconds (sorts as text).
    public static func now() -> String { formatter.string(from: Date()) }

    /// Parses a user's date ("2025-11-22", "2025-11-22T18:30", full ISO 8601; local time unless it names a zone)
    /// into the stored timestamp form.
    public static func timestamp(parsing text: String) throws -> String {
        let local = DateFormatter()
        local.locale = Locale(identifier: "en_US_POSIX")
        local.timeZone = TimeZone.current
        for format in ["yyyy-MM-dd", "yyyy-MM-dd'T'HH:mm", "yyyy-MM-dd'T'HH:mm:ss", "yyyy-MM-dd HH:mm", "yyyy-MM-dd HH:mm:ss"] {
            local.dateFormat = format
            if let d = local.date(from: text) { return formatter.string(from: d) }
        }
        let zoned = ISO8601DateFormatter()
        for options: ISO8601DateFormatter.Options in [[.withInternetDateTime, .withFractionalSeconds], [.withInternetDateTime]] {
            zoned.formatOptions = options
            if let d = zoned.date(from: text) { return formatter.string(from: d) }
        }
        throw StoreError.invalid("cannot read the date '\(text)': use YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS] (local time) or ISO 8601 with a zone")
    }
}
