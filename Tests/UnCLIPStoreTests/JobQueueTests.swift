import Foundation
import XCTest
@testable import UnCLIPStore
@testable import UnCLIPStoreSQLite

/// The store's job queue: turns between owners, claims, cancels, restarts, and one generation per job image.
final class JobQueueTests: StoreTestCase {
    private func job(_ owner: String, _ kind: String = "text-to-image") -> NewJob {
        NewJob(kind: kind, owner: owner, model: nil, payload: #"{"kind":"\#(kind)"}"#)
    }

    func testOwnersTakeTurnsAndEachOwnerIsFIFO() throws {
        let store = try SQLiteStore(url: storeURL)
        let a1 = try store.enqueue(job("a"), limit: nil).id, a2 = try store.enqueue(job("a"), limit: nil).id
        let a3 = try store.enqueue(job("a"), limit: nil).id
        let b1 = try store.enqueue(job("b"), limit: nil).id, b2 = try store.enqueue(job("b"), limit: nil).id
        let c1 = try store.enqueue(job("c"), limit: nil).id
        // Nobody served yet: first jobs of a, b, c in arrival order, then second jobs, then a's third.
        XCTAssertEqual(try store.queuedInClaimOrder().map(\.id), [a1, b1, c1, a2, b2, a3])
        var claimed: [Int64] = []
        while let j = try store.claimNextJob() {
            XCTAssertEqual(j.status, .running)
            XCTAssertEqual(j.attempts, 1)
            claimed.append(j.id)
            try store.finishJob(j.id, status: .done, error: nil)
            // A newcomer after a has been served goes before a's next job.
            if j.id == a1 { _ = try store.enqueue(job("d"), limit: nil) }
        }
        XCTAssertEqual(claimed.count, 7)
        XCTAssertEqual(Array(claimed.prefix(4)), [a1, b1, c1, claimed[3]])
        XCTAssertEqual(try store.job(claimed[3]).owner, "d")
        XCTAssertEqual(Array(claimed.suffix(3)), [a2, b2, a3])
    }

    func testQueueLimitStoresNothing() throws {
        let store = try SQLiteStore(url: storeURL)
        _ = try store.enqueue(job("a"), limit: 2)
        _ = try store.enqueue(job("a"), limit: 2)
        assertStoreError(try store.enqueue(job("a"), limit: 2), mentioning: ["full", "2"])
        XCTAssertEqual(try store.jobs(statuses: [], limit: nil).count, 2)
    }

    func testCancelQueuedAtOnceAndRunningByFlag() throws {
        let store = try SQLiteStore(url: storeURL)
        let first = try store.enqueue(job("a"), limit: nil).id, second = try store.enqueue(job("a"), limit: nil).id
        XCTAssertEqual(try store.claimNextJob()?.id, first)
        let running = try store.cancelJob(first)
        XCTAssertEqual(running.status, .running)
        XCTAssertTrue(running.cancelRequested)
        let queued = try store.cancelJob(second)
        XCTAssertEqual(queued.status, .cancelled)
        XCTAssertNotNil(queued.finishedAt)
        XCTAssertNil(try store.claimNextJob())
        assertStoreError(try store.cancelJob(99), mentioning: ["no job 99"])
        assertStoreError(try store.finishJob(first, status: .queued, error: nil), mentioning: ["done, failed or cancelled"])
    }

    func testInterruptedJobsRunAgainAndTheirImagesAreNotRecordedTwice() throws {
        var store: SQLiteStore? = try SQLiteStore(url: storeURL)
        let id = try store!.enqueue(job("a"), limit: nil).id
        let cancelledWhileRunning = try store!.enqueue(job("b"), limit: nil).id
        _ = try store!.claimNextJob()
        _ = try store!.claimNextJob()
        try store!.cancelJob(cancelledWhileRunning)
        // The job recorded its first image, then the process died.
        let link = JobLink(job: id, index: 0)
        let g = try recordLinked(store!, link)
        store = nil
        let reopened = try SQLiteStore(url: storeURL)
        XCTAssertEqual(try reopened.requeueInterruptedJobs(), [id, cancelledWhileRunning])
        XCTAssertEqual(try reopened.job(id).status, .queued)
        XCTAssertEqual(try reopened.job(cancelledWhileRunning).status, .cancelled)
        let again = try XCTUnwrap(reopened.claimNextJob())
        XCTAssertEqual(again.attempts, 2)
        XCTAssertEqual(again.generations, [g.id])
        XCTAssertEqual(try reopened.generationID(job: link), g.id)
        XCTAssertNil(try reopened.generationID(job: JobLink(job: id, index: 1)))
        XCTAssertEqual(try reopened.generation(g.id).job, link)
        // A second record of the same job image is refused by the store itself.
        XCTAssertThrowsError(try recordLinked(reopened, link))
        XCTAssertEqual(try reopened.count(), 1)
    }

    private func recordLinked(_ store: SQLiteStore, _ link: JobLink) throws -> StoredGeneration {
        var new = NewGeneration(kind: .textToImage, modelID: nil, prompt: "p", settings: RecordedSettings(), seed: 1,
                                embedding: [1, 0], width: 8, height: 8, seconds: 0.1)
        new.job = link
        return try store.record(new, png: Data(UUID().uuidString.utf8))
    }

    func testStarsAndNewFilters() throws {
        let store = try SQLiteStore(url: storeURL)
        let a = try add(store, embedding: [1, 0])
        let b = try add(store, kind: .variation, embedding: [0, 1], parents: [ParentLink(role: "source", id: a.id)])
        let c = try add(store, embedding: [1, 1])
        try store.setStarred(b.id, true)
        XCTAssertTrue(try store.generation(b.id).starred)
        XCTAssertEqual(try store.generations(GenerationFilter(starred: true)).map(\.id), [b.id])
        XCTAssertEqual(try store.generations(GenerationFilter(parent: a.id)).map(\.id), [b.id])
        XCTAssertEqual(try store.generations(GenerationFilter(beforeID: c.id), limit: 1).map(\.id), [b.id])
        try store.setStarred(b.id, false)
        XCTAssertEqual(try store.count(GenerationFilter(starred: true)), 0)
        assertStoreError(try store.setStarred(42, true), mentioning: ["no generation 42"])
    }
}
