import CKernels
import Foundation
import XCTest
@testable import UnCLIPTensor

/// The core count the parallel loops use follows the affinity mask, as the kernel reports it in
/// /proc/self/status (Cpus_allowed_list, e.g. "0-1" or "0,2-3").
final class ParallelTests: XCTestCase {
    func testCoreCountFollowsTheAffinityMask() throws {
        let status = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
        let line = try XCTUnwrap(status.split(separator: "\n").first { $0.hasPrefix("Cpus_allowed_list:") })
        let list = line.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)
        var allowed = 0
        for part in list.split(separator: ",") {
            let ends = part.split(separator: "-").compactMap { Int($0) }
            allowed += ends.count == 2 ? ends[1] - ends[0] + 1 : 1
        }
        XCTAssertEqual(Int(uc_affinity_cpus()), allowed)
        XCTAssertEqual(coreCount(environment: [:]), min(allowed, ProcessInfo.processInfo.activeProcessorCount))
    }

    /// OPENBLAS_NUM_THREADS caps the worker count (it never raises it); junk is ignored.
    func testOpenBLASThreadVariableCapsTheWorkers() {
        let cores = coreCount(environment: [:])
        XCTAssertEqual(coreCount(environment: ["OPENBLAS_NUM_THREADS": "1"]), 1)
        XCTAssertEqual(coreCount(environment: ["OPENBLAS_NUM_THREADS": "512"]), cores)
        XCTAssertEqual(coreCount(environment: ["OPENBLAS_NUM_THREADS": "0"]), cores)
        XCTAssertEqual(coreCount(environment: ["OPENBLAS_NUM_THREADS": "two"]), cores)
    }
}
