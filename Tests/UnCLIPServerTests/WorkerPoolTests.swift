import Foundation
import UnCLIPStore
import UnCLIPStorePostgres
import UnCLIPTestSupport
import XCTest

/// A front end and a pool of `unclip worker` processes sharing a real PostgreSQL server, on the shipped model, with
/// faults injected while jobs run: a worker SIGKILLed mid-job, PostgreSQL restarted (`pg_ctl restart -m fast`), and
/// one worker's connection cut by the server (`pg_terminate_backend`). Every job must end `done` exactly once, no
/// generation twice, no image without a row, and every image byte-identical to the one a single SQLite-backed
/// process makes from the same request.
final class WorkerPoolTests: XCTestCase {
    var tmp: URL!
    override func setUpWithError() throws { tmp = try makeTemporaryDirectory(for: self, prefix: "unclip-pool") }

    /// A running `unclip` subcommand whose stderr is kept (and drained, so it never blocks).
    final class Running {
        let process = Process()
        private let lock = NSLock()
        private var text = ""
        var log: String { lock.withLock { text } }

        init(_ args: [String]) throws {
            process.executableURL = builtProduct("unclip")
            process.arguments = args
            process.currentDirectoryURL = Repository.root
            let err = Pipe()
            process.standardError = err
            process.standardOutput = FileHandle.nullDevice
            try process.run()
            let handle = err.fileHandleForReading
            DispatchQueue.global().async { [self] in
                while true {
                    let chunk = handle.availableData
                    if chunk.isEmpty { break }
                    lock.withLock { text += String(decoding: chunk, as: UTF8.self) }
                }
            }
        }

        /// Waits for `pattern` in stderr; returns the first capture group.
        func wait(for pattern: String, timeout: TimeInterval = 60) throws -> String {
            let deadline = Date().addingTimeInterval(timeout)
            while Date() < deadline {
                let seen = log
                if let r = seen.range(of: pattern, options: .regularExpression) {
                    let match = String(seen[r])
                    let re = try NSRegularExpression(pattern: pattern)
                    if let m = re.firstMatch(in: match, range: NSRange(match.startIndex..., in: match)), m.numberOfRanges > 1,
                       let g = Range(m.range(at: 1), in: match) { return String(match[g]) }
                    return match
                }
                if !process.isRunning { break }
                usleep(20_000)
            }
            throw RawHTTP.Failure(description: "\(process.arguments?.first ?? "") never printed /\(pattern)/; it said: \(log)")
        }

        func stop(_ signal: Int32 = SIGTERM) {
            if process.isRunning { kill(process.processIdentifier, signal) }
            process.waitUntilExit()
        }
    }

    private func serve(_ args: [String]) throws -> (Running, Int) {
        let p = try Running(["serve", "--port", "0"] + args)
        guard let port = Int(try p.wait(for: #"listening on http://[^:]+:(\d+)"#)) else { throw RawHTTP.Failure(description: p.log) }
        return (p, port)
    }

    private func jobBodies(_ n: Int) -> [[String: Any]] {
        (0..<n).map { ["kind": "text-to-image", "prompt": "a \(["red", "green", "blue"][$0 % 3]) circle \($0)", "seed": 1000 + $0, "steps": 40, "count": 1] }
    }

    /// Queues `bodies` and waits until every job is final; returns the jobs and sha256 by seed.
    private func run(_ bodies: [[String: Any]], port: Int, during faults: ((Int) async throws -> Void)? = nil,
                     timeout: TimeInterval = 240) async throws -> (jobs: [[String: Any]], images: [Int: String]) {
        var ids: [Int] = []
        for b in bodies {
            let r = try await RawHTTP.request("POST", "/api/jobs", port: port, json: b)
            XCTAssertEqual(r.status, 202, r.text)
            ids.append(r.object["id"] as? Int ?? -1)
        }
        var jobs: [[String: Any]] = []
        var faultsDone = faults == nil
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            jobs = []
            for id in ids { jobs.append(try await RawHTTP.request("GET", "/api/jobs/\(id)", port: port).object) }
            let done = jobs.filter { ($0["status"] as? String).map { ["done", "failed", "cancelled"].contains($0) } ?? false }.count
            if !faultsDone, let faults { try await faults(done); faultsDone = true }
            if done == ids.count { break }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        var images: [Int: String] = [:]
        let all = try await RawHTTP.request("GET", "/api/generations?limit=500", port: port).object["generations"] as? [[String: Any]] ?? []
        for g in all { if let seed = g["seed"] as? Int { images[seed] = g["sha256"] as? String } }
        return (jobs, images)
    }

    func testWorkersSurviveAKilledWorkerADatabaseRestartAndACutConnection() async throws {
        let pg = try PostgresTestServer()
        defer { pg.stop() }
        let url = try pg.createDatabase("pool")
        let bodies = jobBodies(18)

        // The reference: one process on a SQLite store makes every image.
        let (single, singlePort) = try serve(["--store", tmp.appendingPathComponent("ref.sqlite").path])
        let reference = try await run(bodies, port: singlePort)
        single.stop()
        XCTAssertEqual(reference.images.count, bodies.count)

        let (front, port) = try serve(["--store", url, "--workers", "0"])
        defer { front.stop() }
        var workers = try (0..<3).map { _ in
            try Running(["worker", "--store", url, "--threads", "1", "--lease-seconds", "3", "--heartbeat-seconds", "1"])
        }
        defer { for w in workers { w.stop() } }
        for w in workers { _ = try w.wait(for: "running jobs for") }

        let result = try await run(bodies, port: port) { done in
            // Once work is under way: kill a worker while it holds a job (its pid is in the job's lease holder,
            // "host:pid:random"), restart the database, cut a connection.
            var victim: Int?
            for _ in 0..<1000 where victim == nil {
                let holder = try pg.psql("SELECT worker FROM jobs WHERE status = 'running' LIMIT 1", database: "pool")
                let pid = holder.split(separator: ":").dropFirst().first.flatMap { Int($0) }
                victim = workers.firstIndex { pid == Int($0.process.processIdentifier) }
                if victim == nil { try await Task.sleep(nanoseconds: 5_000_000) }
            }
            let v = try XCTUnwrap(victim, "no worker was seen holding a job")
            workers[v].stop(SIGKILL)
            workers.remove(at: v)
            try pg.restart()
            try await Task.sleep(nanoseconds: 500_000_000)
            let cut = try pg.psql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name LIKE 'unclip-worker%' AND pid = (SELECT min(pid) FROM pg_stat_activity WHERE application_name LIKE 'unclip-worker%')", database: "pool")
            XCTAssertEqual(cut.trimmingCharacters(in: .whitespacesAndNewlines), "1", "one worker connection was cut")
        }
        XCTAssertEqual(result.jobs.compactMap { $0["status"] as? String }, Array(repeating: "done", count: bodies.count),
                       "every job done: \(result.jobs.filter { $0["status"] as? String != "done" })")
        for job in result.jobs { XCTAssertEqual((job["generations"] as? [Int])?.count, 1, "\(job)") }
        XCTAssertTrue(result.jobs.contains { ($0["attempts"] as? Int ?? 0) >= 2 }, "the killed worker's job ran again elsewhere")
        XCTAssertEqual(result.images, reference.images, "every image byte-identical to the single-process SQLite run")

        // The database itself: one generation per job, no image without a row, nothing half-written.
        let store = try PostgresStore(try PostgresLocation(url: url))
        XCTAssertEqual(try store.count(), bodies.count)
        let report = try store.check(verify: true)
        XCTAssertTrue(report.isClean, "\(report)")
        XCTAssertEqual(Set(try store.generations().compactMap(\.job)).count, bodies.count)
    }

    func testAFrontEndRelaysTheProgressOfJobsThatAWorkerElsewhereRuns() async throws {
        let pg = try PostgresTestServer()
        defer { pg.stop() }
        let url = try pg.createDatabase("relay")
        let (front, port) = try serve(["--store", url, "--workers", "0"])
        defer { front.stop() }
        let worker = try Running(["worker", "--store", url, "--threads", "1"])
        defer { worker.stop() }
        _ = try worker.wait(for: "running jobs for")
        let r = try await RawHTTP.request("POST", "/api/jobs", port: port, json: ["kind": "text-to-image", "prompt": "a red circle", "seed": 5, "steps": 150, "count": 3])
        let id = r.object["id"] as? Int ?? -1
        // The front end computes nothing: what its event stream says came from the worker through the database.
        let events = try await RawHTTP.request("GET", "/api/jobs/\(id)/events", port: port)
        let names = TestServer.events(events.text).map(\.0)
        XCTAssertTrue(names.contains("progress"), "\(names)")
        XCTAssertTrue(names.contains("image"), "\(names)")
        XCTAssertEqual(names.last, "done", "\(names)")
        let job = try await RawHTTP.request("GET", "/api/jobs/\(id)", port: port).object
        XCTAssertEqual(job["status"] as? String, "done")
        // SIGTERM stops a worker cleanly.
        worker.stop()
        XCTAssertEqual(worker.process.terminationStatus, 0, worker.log)
    }
}
