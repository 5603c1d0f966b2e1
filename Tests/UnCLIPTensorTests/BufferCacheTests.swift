import CKernels
import XCTest
@testable import UnCLIPTensor

/// The large-buffer cache (buffers.h): reuse by exact size, its byte limit, and the flush that
/// `returnFreedMemory()` does. Tests run serially, so the process-wide cache is ours while each one runs.
final class BufferCacheTests: XCTestCase {
    private let large = Int(UC_BUFFER_LARGE)

    /// The limit before the test (tests change it; the process default is buffers.c's business, not theirs).
    private var savedLimit = 0

    override func setUp() {
        savedLimit = uc_buffer_cache_limit()
        uc_buffer_cache_flush()
    }
    override func tearDown() {
        uc_buffer_set_cache_limit(savedLimit)
        uc_buffer_cache_flush()
    }

    func testFreedBufferIsReusedForTheSameSizeOnly() throws {
        let a = try XCTUnwrap(uc_buffer_alloc(large + 100))
        XCTAssertEqual(Int(bitPattern: a) % 64, 0)
        a.storeBytes(of: 7, as: Int.self)
        uc_buffer_free(a, large + 100)
        XCTAssertEqual(uc_buffer_cache_bytes(), (large + 100 + 4095) / 4096 * 4096)
        // Another size maps fresh memory and leaves the cached one alone.
        let b = try XCTUnwrap(uc_buffer_alloc(2 * large))
        XCTAssertNotEqual(a, b)
        XCTAssertEqual(uc_buffer_cache_bytes(), (large + 100 + 4095) / 4096 * 4096)
        // The same mapped size takes the cached buffer back, contents and all (no fresh zeroed page).
        let c = try XCTUnwrap(uc_buffer_alloc(large + 50))
        XCTAssertEqual(a, c)
        XCTAssertEqual(c.load(as: Int.self), 7)
        XCTAssertEqual(uc_buffer_cache_bytes(), 0)
        uc_buffer_free(b, 2 * large)
        uc_buffer_free(c, large + 50)
        XCTAssertEqual(uc_buffer_cache_bytes(), 3 * large + 4096)
        returnFreedMemory()
        XCTAssertEqual(uc_buffer_cache_bytes(), 0)
    }

    func testLimitDropsTheOldestBuffersFirst() throws {
        uc_buffer_set_cache_limit(2 * large)
        let first = try XCTUnwrap(uc_buffer_alloc(large)), second = try XCTUnwrap(uc_buffer_alloc(large + 4096))
        uc_buffer_free(first, large)
        uc_buffer_free(second, large + 4096)
        // Both cannot stay under the limit: the first one freed is unmapped.
        XCTAssertEqual(uc_buffer_cache_bytes(), large + 4096)
        let again = try XCTUnwrap(uc_buffer_alloc(large + 4096))
        XCTAssertEqual(again, second)
        uc_buffer_free(again, large + 4096)
        // A buffer over the limit is never cached.
        let huge = try XCTUnwrap(uc_buffer_alloc(3 * large))
        uc_buffer_free(huge, 3 * large)
        XCTAssertEqual(uc_buffer_cache_bytes(), large + 4096)
    }

    func testSmallTensorsStayOnTheHeapAndLargeOnesRoundTrip() {
        let small = Tensor(uninitialized: [16, 16])
        XCTAssertEqual(Int(bitPattern: small.pointer) % 64, 0)
        do {
            let t = Tensor(uninitialized: [large / 4 + 3])
            t.pointer[large / 4 + 2] = 1
        }
        // The tensor's storage went back to the cache with the size it was allocated with.
        XCTAssertEqual(uc_buffer_cache_bytes(), (large + 12 + 4095) / 4096 * 4096)
    }
}
