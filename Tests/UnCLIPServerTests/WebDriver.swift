import Foundation
import UnCLIPTestSupport
import XCTest

/// A W3C WebDriver client for Debian's chromedriver driving headless Chromium: just the commands the gallery
/// test needs, over the plain HTTP test client.
final class WebDriver {
    struct Failure: Error, CustomStringConvertible { let description: String }

    let driver: Process
    let port: Int
    private(set) var session = ""

    static var chromedriver: String? {
        ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }
    static var chromium: String? {
        ["/usr/bin/chromium", "/usr/lib/chromium/chromium"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// Starts chromedriver on a free port and a headless browser session.
    init(width: Int = 1280, height: Int = 900) async throws {
        guard let chromedriver = Self.chromedriver, let chromium = Self.chromium else { throw Failure(description: "chromium or chromedriver is not installed") }
        port = Int.random(in: 20000...40000)
        driver = Process()
        driver.executableURL = URL(fileURLWithPath: chromedriver)
        driver.arguments = ["--port=\(port)", "--allowed-ips=127.0.0.1"]
        driver.standardOutput = FileHandle.nullDevice
        driver.standardError = FileHandle.nullDevice
        try driver.run()
        var ready = false
        for _ in 0..<200 {
            if let r = try? await RawHTTP.request("GET", "/status", port: port), (r.object["value"] as? [String: Any])?["ready"] as? Bool == true {
                ready = true
                break
            }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        guard ready else { driver.terminate(); throw Failure(description: "chromedriver did not start on port \(port)") }
        let caps: [String: Any] = ["capabilities": ["alwaysMatch": [
            "browserName": "chrome",
            "goog:chromeOptions": ["binary": chromium,
                                   "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                            "--window-size=\(width),\(height)", "--force-prefers-reduced-motion"]],
            "goog:loggingPrefs": ["browser": "ALL"],
        ]]]
        let r = try await RawHTTP.request("POST", "/session", port: port, json: caps)
        guard let value = r.object["value"] as? [String: Any], let id = value["sessionId"] as? String else {
            driver.terminate()
            throw Failure(description: "no browser session: \(r.text.prefix(500))")
        }
        session = id
    }

    /// Ends the session (closing the browser), waiting at most 5 s for chromedriver's answer, then stops
    /// chromedriver (killing it if it lingers: a test must not hang on its browser).
    func quit() async {
        final class Flag: @unchecked Sendable { let lock = NSLock(); var done = false }
        let flag = Flag()
        let port = self.port, session = self.session
        Task.detached {
            _ = try? await RawHTTP.request("DELETE", "/session/\(session)", port: port)
            flag.lock.withLock { flag.done = true }
        }
        for _ in 0..<50 where !flag.lock.withLock({ flag.done }) { try? await Task.sleep(nanoseconds: 100_000_000) }
        if driver.isRunning { kill(driver.processIdentifier, SIGTERM) }
        for _ in 0..<30 where driver.isRunning { try? await Task.sleep(nanoseconds: 100_000_000) }
        if driver.isRunning { kill(driver.processIdentifier, SIGKILL) }
    }

    @discardableResult
    func command(_ method: String, _ path: String, _ body: [String: Any]? = nil) async throws -> Any? {
        let r = try await RawHTTP.request(method, "/session/\(session)\(path)", port: port, json: body ?? (method == "POST" ? [:] : nil))
        let value = r.object["value"]
        if r.status != 200 {
            let message = (value as? [String: Any])?["message"] as? String ?? r.text
            throw Failure(description: "\(method) \(path): \(r.status) \(message.prefix(300))")
        }
        return value is NSNull ? nil : value
    }

    func open(_ url: String) async throws { try await command("POST", "/url", ["url": url]) }

    /// Runs a script in the page; its `return` value comes back.
    @discardableResult
    func script(_ source: String, _ args: [Any] = []) async throws -> Any? {
        try await command("POST", "/execute/sync", ["script": source, "args": args])
    }

    /// Elements by CSS selector or XPath, as WebDriver element references.
    func find(css: String) async throws -> [String] { try await find("css selector", css) }
    func find(xpath: String) async throws -> [String] { try await find("xpath", xpath) }

    private func find(_ using: String, _ value: String) async throws -> [String] {
        let v = try await command("POST", "/elements", ["using": using, "value": value]) as? [[String: Any]] ?? []
        return v.compactMap { $0.values.first as? String }
    }

    /// Waits for at least one element; fails with what was looked for.
    func waitFor(css: String? = nil, xpath: String? = nil, timeout: TimeInterval = 30) async throws -> String {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let found = css != nil ? try await find(css: css!) : try await find(xpath: xpath!)
            if let first = found.first { return first }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        throw Failure(description: "no element \(css ?? xpath ?? "") after \(Int(timeout)) s")
    }

    /// Waits until a script returns true.
    func waitUntil(_ what: String, _ source: String, timeout: TimeInterval = 30) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try await script(source) as? Bool == true { return }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        throw Failure(description: "timed out waiting until \(what)")
    }

    func click(_ element: String) async throws { try await command("POST", "/element/\(element)/click") }
    func clear(_ element: String) async throws { try await command("POST", "/element/\(element)/clear") }
    func type(_ element: String, _ text: String) async throws { try await command("POST", "/element/\(element)/value", ["text": text]) }
    func text(_ element: String) async throws -> String { try await command("GET", "/element/\(element)/text") as? String ?? "" }
    func attribute(_ element: String, _ name: String) async throws -> String? {
        try await command("GET", "/element/\(element)/attribute/\(name)") as? String
    }
    /// Accepts a `confirm()` dialog if one is open (true when there was one).
    func acceptAlert() async -> Bool {
        do { try await command("POST", "/alert/accept"); return true } catch { return false }
    }
    func alertText() async -> String? { try? await command("GET", "/alert/text") as? String }

    func screenshot(to url: URL) async throws {
        guard let b64 = try await command("GET", "/screenshot") as? String, let data = Data(base64Encoded: b64) else { return }
        try data.write(to: url)
    }

    /// Browser console entries at SEVERE (errors) since the last call.
    func consoleErrors() async throws -> [String] {
        let entries = try await command("POST", "/se/log", ["type": "browser"]) as? [[String: Any]] ?? []
        return entries.filter { ($0["level"] as? String) == "SEVERE" }.compactMap { $0["message"] as? String }
    }
}
