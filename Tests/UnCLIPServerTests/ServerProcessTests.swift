import Foundation
import UnCLIPTestSupport
import XCTest

/// `unclip serve` as a process: refusing to start exposed without a key, and a SIGKILL with jobs queued
/// and running, after which a restart completes every accepted job exactly once.
final class ServerProcessTests: XCTestCase {
    var tmp: URL!
    override func setUpWithError() throws { tmp = try makeTemporaryDirectory(for: self, prefix: "unclip-serve") }

    /// A running `unclip serve` and the port it reported.
    final class Served {
        let process: Process
        let port: Int
        init(_ args: [String], environment: [String: String] = [:]) throws {
            process = Process()
            process.executableURL = builtProduct("unclip")
            process.arguments = ["serve", "--port", "0"] + args
            process.currentDirectoryURL = Repository.root
            process.environment = ProcessInfo.processInfo.environment.merging(environment, uniquingKeysWith: { $1 })
            let err = Pipe()
            process.standardError = err
            process.standardOutput = FileHandle.nullDevice
            try process.run()
            // "unclip serve: listening on http://HOST:PORT (…)"
            var seen = ""
            var port: Int?
            while port == nil {
                let chunk = err.fileHandleForReading.availableData
                if chunk.isEmpty { break }
                seen += String(decoding: chunk, as: UTF8.self)
                if let r = seen.range(of: #"listening on http://[^:]+:(\d+)"#, options: .regularExpression) {
                    port = Int(seen[r].split(separator: ":").last ?? "")
                }
            }
            guard let port else { throw RawHTTP.Failure(description: "unclip serve did not start: \(seen)") }
            self.port = port
            // Keep draining stderr (the request log), so the server never blocks on a full pipe.
            let handle = err.fileHandleForReading
            DispatchQueue.global().async { while !handle.availableData.isEmpty {} }
        }
        func call(_ method: String, _ path: String, json: Any? = nil) async throws -> HTTPReply {
            try await RawHTTP.request(method, path, port: port, json: json)
        }
    }

    func testRefusesToListenBeyondLoopbackWithoutAKey() throws {
        let r = try runProcess(builtProduct("unclip"), ["serve", "--host", "0.0.0.0", "--port", "0", "--store", tmp.appendingPathComponent("s.sqlite").path],
                               environment: ["UNCLIP_API_KEY": ""])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("API key") && r.stderr.contains("--api-key") && r.stderr.contains("0.0.0.0"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: tmp.appendingPathComponent("s.sqlite").path), "nothing was created")
    }

    func testWithAKeyItListensAndSIGTERMStopsIt() async throws {
        let served = try Served(["--host", "0.0.0.0", "--store", tmp.appendingPathComponent("s.sqlite").path],
                                environment: ["UNCLIP_API_KEY": "a-long-enough-key"])
        let health = try await served.call("GET", "/healthz").status
        XCTAssertEqual(health, 200)
        let locked = try await served.call("GET", "/api/generations").status
        XCTAssertEqual(locked, 401)
        served.process.terminate()
        served.process.waitUntilExit()
        XCTAssertEqual(served.process.terminationStatus, 0, "a graceful stop")
    }

    /// SIGTERM while a job runs: the server stops within a step, records no partial image, and the job runs
    /// again (whole) at the next start.
    func testSIGTERMDuringAJobStopsAtAStepAndTheJobRunsAgain() async throws {
        let store = tmp.appendingPathComponent("store.sqlite").path
        var served = try Served(["--store", store])
        let r = try await served.call("POST", "/api/jobs", json: ["kind": "text-to-image", "prompt": "x", "count": 10, "steps": 150])
        let id = r.object["id"] as? Int ?? 0
        for _ in 0..<1000 {
            if try await served.call("GET", "/api/jobs/\(id)").object["status"] as? String == "running" { break }
            try await Task.sleep(nanoseconds: 2_000_000)
        }
        let asked = Date()
        served.process.terminate()
        served.process.waitUntilExit()
        XCTAssertEqual(served.process.terminationStatus, 0)
        XCTAssertLessThan(Date().timeIntervalSince(asked), 5, "stops within a step, not after the job")
        let leftovers = (try? FileManager.default.contentsOfDirectory(atPath: tmp.appendingPathComponent("store-images/.tmp").path)) ?? []
        XCTAssertEqual(leftovers, [], "no half-written image")
        served = try Served(["--store", store])
        defer { served.process.terminate(); served.process.waitUntilExit() }
        var job: [String: Any] = [:]
        for _ in 0..<3000 {
            job = try await served.call("GET", "/api/jobs/\(id)").object
            if job["status"] as? String == "done" { break }
            try await Task.sleep(nanoseconds: 20_000_000)
        }
        XCTAssertEqual(job["status"] as? String, "done")
        XCTAssertEqual((job["generations"] as? [Int])?.count, 10)
        XCTAssertEqual(job["attempts"] as? Int, 2)
    }

    func testSIGKILLWithJobsQueuedThenRestartCompletesEachJobExactlyOnce() async throws {
        let store = tmp.appendingPathComponent("store.sqlite").path
        var served = try Served(["--store", store])
        var ids: [Int] = []
        for i in 0..<8 {
            let r = try await served.call("POST", "/api/jobs", json: ["kind": "text-to-image", "prompt": "a red circle \(i)", "count": 3, "steps": 60])
            XCTAssertEqual(r.status, 202, r.text)
            ids.append(r.object["id"] as? Int ?? 0)
        }
        // Kill it mid-job: once some images are stored and a job is part-way.
        var killedWith = 0
        for _ in 0..<2000 {
            let page = try await served.call("GET", "/api/generations?limit=500").object["generations"] as? [Any] ?? []
            if page.count >= 4 && page.count % 3 != 0 { killedWith = page.count; break }
            try await Task.sleep(nanoseconds: 2_000_000)
        }
        kill(served.process.processIdentifier, SIGKILL)
        served.process.waitUntilExit()
        XCTAssertGreaterThan(killedWith, 0, "the kill came while a job was part-way")

        served = try Served(["--store", store])
        defer { served.process.terminate(); served.process.waitUntilExit() }
        let deadline = Date().addingTimeInterval(300)
        var jobs: [[String: Any]] = []
        while Date() < deadline {
            jobs = []
            for id in ids { jobs.append(try await served.call("GET", "/api/jobs/\(id)").object) }
            if jobs.allSatisfy({ $0["status"] as? String == "done" }) { break }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        XCTAssertEqual(jobs.compactMap { $0["status"] as? String }, Array(repeating: "done", count: 8))
        for job in jobs { XCTAssertEqual((job["generations"] as? [Int])?.count, 3, "\(job)") }
        XCTAssertTrue(jobs.contains { $0["attempts"] as? Int == 2 }, "the interrupted job ran again")
        let all = try await served.call("GET", "/api/generations?limit=500").object["generations"] as? [[String: Any]] ?? []
        XCTAssertEqual(all.count, 24, "no image was made twice or lost")
        let links = all.compactMap { g -> String? in (g["job"] as? Int).map { "\($0)-\(g["seed"] as? Int ?? -1)" } }
        XCTAssertEqual(Set(links).count, 24)
    }
}
