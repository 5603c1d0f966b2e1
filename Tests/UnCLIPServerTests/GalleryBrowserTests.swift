import Foundation
@_spi(Tools) import UnCLIPStoreSQLite
import UnCLIPStore
import UnCLIPTestSupport
import XCTest

/// The gallery in a real browser: headless Chromium driven through chromedriver against a real `unclip serve`
/// on the shipped model. Elements are found by their accessible names (the page's test contract). A failing
/// step saves a screenshot under $TMPDIR/unclip-gallery-failures/.
final class GalleryBrowserTests: XCTestCase {
    var tmp: URL!
    var s: TestServer!
    var wd: WebDriver!

    override func setUp() async throws {
        guard WebDriver.chromedriver != nil, WebDriver.chromium != nil else {
            throw XCTSkip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver; .ci/run installs them)")
        }
        tmp = try makeTemporaryDirectory(for: self, prefix: "unclip-gallery")
    }

    override func tearDown() async throws {
        await wd?.quit()
        try await s?.stop()
    }

    /// Runs one step; on failure saves a screenshot named after it and rethrows.
    func step(_ name: String, _ body: () async throws -> Void) async throws {
        FileHandle.standardError.write(Data("gallery test: \(name)\n".utf8))
        do { try await body() } catch {
            let folder = FileManager.default.temporaryDirectory.appendingPathComponent("unclip-gallery-failures")
            try? FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            let shot = folder.appendingPathComponent("\(name.replacingOccurrences(of: " ", with: "-")).png")
            try? await wd.screenshot(to: shot)
            XCTFail("step '\(name)' failed: \(error) (screenshot: \(shot.path))")
            throw error
        }
    }

    func button(_ name: String) -> String { "//button[normalize-space()='\(name)']" }

    func testGenerateSearchVaryStarDeleteAndCancelInTheBrowser() async throws {
        s = try await TestServer.start(folder: tmp)
        wd = try await WebDriver()
        let red = "a red circle on the left", blue = "a blue square on the right"
        var redID: Int64 = 0, blueID: Int64 = 0

        try await step("open") {
            try await wd.open(s.base.absoluteString + "/")
            _ = try await wd.waitFor(xpath: "//label[@for='prompt' and normalize-space()='Prompt']")
            _ = try await wd.waitFor(xpath: "//label[normalize-space()='Search']/following::input[@type='search'][1]")
            // First load: the page and everything it fetched, as the browser counts it.
            let bytes = try await wd.script("""
                const n = performance.getEntriesByType('navigation')[0];
                return performance.getEntriesByType('resource').reduce((a, r) => a + (r.transferSize || r.encodedBodySize || 0), n.transferSize || n.encodedBodySize || 0);
                """) as? Int ?? 0
            print("gallery first load: \(bytes) bytes")
            XCTAssertLessThanOrEqual(bytes, 200_000)
        }

        func generate(_ prompt: String, seed: Int) async throws -> Int64 {
            let field = try await wd.waitFor(css: "#prompt")
            try await wd.clear(field)
            try await wd.type(field, prompt)
            let count = try await wd.waitFor(css: "#count")
            try await wd.clear(count)
            try await wd.type(count, "1")
            let seedField = try await wd.waitFor(css: "#seed")
            try await wd.clear(seedField)
            try await wd.type(seedField, "\(seed)")
            try await wd.click(try await wd.waitFor(xpath: button("Generate")))
            let thumb = try await wd.waitFor(css: "#gallery img[alt='\(prompt)']")
            _ = thumb
            let cell = try await wd.waitFor(xpath: "//div[@id='gallery']//img[@alt='\(prompt)']/ancestor::*[@data-id][1]")
            return Int64(try await wd.attribute(cell, "data-id") ?? "") ?? 0
        }

        try await step("generate") {
            try await wd.script("""
                window.__progress = [];
                const t = document.querySelector('#progress-text');
                new MutationObserver(() => window.__progress.push(t.textContent)).observe(t, {childList: true, characterData: true, subtree: true});
                return true;
                """)
            redID = try await generate(red, seed: 5)
            XCTAssertTrue(try s.store.contains(redID))
            let seen = try await wd.script("return window.__progress") as? [String] ?? []
            XCTAssertTrue(seen.contains { $0.contains("%") }, "progress was shown: \(seen)")
            blueID = try await generate(blue, seed: 6)
        }

        try await step("text search") {
            let box = try await wd.waitFor(css: "input[type=search]")
            try await wd.type(box, red + "\u{E007}")
            try await wd.waitUntil("the red circle ranks first", """
                const c = document.querySelector('#gallery [data-id] .score') && document.querySelector('#gallery [data-id]');
                return !!c && c.getAttribute('data-id') === '\(redID)' && !!c.querySelector('.score');
                """)
        }

        func openDetail(_ id: Int64) async throws {
            try await wd.script("location.hash = ''; return true")
            let link = try await wd.waitFor(css: "#gallery [data-id='\(id)'] a")
            try await wd.click(link)
            try await wd.waitUntil("the detail view shows #\(id)", "return document.querySelector('#detail').open && location.hash === '#g=\(id)'")
        }

        try await step("more like this") {
            try await wd.click(try await wd.waitFor(css: "#back"))
            try await openDetail(blueID)
            try await wd.click(try await wd.waitFor(xpath: button("More like this")))
            try await wd.waitUntil("the source is listed first", "const c = document.querySelector('#gallery [data-id]'); return !!c && c.getAttribute('data-id') === '\(blueID)'")
            try await wd.click(try await wd.waitFor(css: "#back"))
        }

        try await step("variations") {
            try await openDetail(redID)
            for name in ["Variations", "Nudge", "Interpolate", "Edit", "Star", "Delete"] { _ = try await wd.waitFor(xpath: button(name)) }
            let count = try await wd.waitFor(css: "#a-var-count")
            try await wd.clear(count)
            try await wd.type(count, "2")
            try await wd.click(try await wd.waitFor(xpath: button("Variations")))
            let deadline = Date().addingTimeInterval(60)
            while try s.store.children(of: redID).count < 2 && Date() < deadline { try await Task.sleep(nanoseconds: 100_000_000) }
            let children = try s.store.children(of: redID)
            XCTAssertEqual(children.count, 2)
            // The lineage lists the children as clickable thumbnails.
            try await wd.waitUntil("the lineage shows both variations", """
                return \(children).every(id => document.querySelector(`#d-lineage [href='#g=${id}'], #d-lineage [data-id='${id}']`));
                """, timeout: 30)
        }

        try await step("star then delete") {
            try await wd.click(try await wd.waitFor(xpath: button("Star")))
            let deadline = Date().addingTimeInterval(10)
            while !(try s.store.generation(redID).starred) && Date() < deadline { try await Task.sleep(nanoseconds: 50_000_000) }
            XCTAssertTrue(try s.store.generation(redID).starred)
            try await wd.click(try await wd.waitFor(xpath: button("Delete")))
            _ = await wd.acceptAlert()
            try await Task.sleep(nanoseconds: 500_000_000)
            XCTAssertTrue(try s.store.contains(redID), "a starred picture is not deleted")
            try await wd.waitUntil("the refusal is shown", "return /starred/i.test(document.querySelector('#d-msg').textContent)")
            try await wd.click(try await wd.waitFor(xpath: button("Star")))
            let unstarDeadline = Date().addingTimeInterval(10)
            while (try s.store.generation(redID).starred) && Date() < unstarDeadline { try await Task.sleep(nanoseconds: 50_000_000) }
            try await wd.click(try await wd.waitFor(xpath: button("Delete")))
            let asked = await wd.acceptAlert()
            XCTAssertTrue(asked, "deleting asks first")
            let goneDeadline = Date().addingTimeInterval(10)
            while (try s.store.contains(redID)) && Date() < goneDeadline { try await Task.sleep(nanoseconds: 50_000_000) }
            XCTAssertFalse(try s.store.contains(redID))
            XCTAssertEqual(try s.store.generations(GenerationFilter(kinds: [.variation])).count, 2, "its children stay")
            try await wd.waitUntil("the deleted thumbnail leaves the gallery", "return !document.querySelector(\"#gallery [data-id='\(redID)']\")")
        }

        try await step("cancel") {
            try await wd.script("if (document.querySelector('#detail').open) document.querySelector('#detail').close(); return true")
            let job = try await s.call("POST", "/api/jobs", json: ["kind": "text-to-image", "prompt": "busy", "count": 10, "steps": 150])
            let id = Int64(job.object["id"] as? Int ?? 0)
            let cancel = try await wd.waitFor(xpath: "//ul[@id='queue']//button[normalize-space()='Cancel']", timeout: 30)
            try await wd.click(cancel)
            let ended = try await s.waitForJob(id, timeout: 30)
            XCTAssertEqual(ended["status"] as? String, "cancelled")
        }

        try await step("console") {
            let errors = try await wd.consoleErrors()
            XCTAssertEqual(errors, [], "the browser console has errors")
        }
    }

    /// 5,000 generations: scrolling to deep pages keeps the page's DOM bounded.
    func testScrollingFiveThousandGenerationsKeepsTheDOMBounded() async throws {
        // Rows written straight into a store (a real PNG each), far faster than making 5,000 images.
        do {
            let store = try SQLiteStore(url: tmp.appendingPathComponent("store.sqlite"))
            let png = try Data(contentsOf: Repository.url("docs/shapes-demo.png"))
            let images = tmp.appendingPathComponent("store-images")
            try FileManager.default.createDirectory(at: images, withIntermediateDirectories: true)
            let db = store.connection
            try db.writeTransaction {
                for id in 1...5000 {
                    try png.write(to: images.appendingPathComponent("\(id).png"))
                    try db.run("""
                        INSERT INTO generations(id, created_at, kind, settings, seed, image_file, sha256, width, height, file_bytes)
                        VALUES(?, '2026-12-03T00:00:00.000Z', 'source', '{}', ?, ?, 's', 32, 32, ?)
                        """, [.int(Int64(id)), .int(Int64(id)), .text("\(id).png"), .int(Int64(png.count))])
                }
            }
        }
        s = try await TestServer.start(folder: tmp)
        wd = try await WebDriver()
        try await step("scroll") {
            try await wd.open(s.base.absoluteString + "/")
            _ = try await wd.waitFor(css: "#gallery [data-id='5000']")
            var most = 0, deepest = 5000
            for _ in 0..<120 {
                try await wd.script("window.scrollBy(0, 2400); return true")
                try await Task.sleep(nanoseconds: 60_000_000)
                let state = try await wd.script("""
                    const ids = [...document.querySelectorAll('#gallery [data-id]')].map(e => +e.getAttribute('data-id'));
                    return [document.querySelectorAll('#gallery img').length, ids.length ? Math.min(...ids) : 5000];
                    """) as? [Int] ?? [0, 5000]
                most = max(most, state[0])
                deepest = min(deepest, state[1])
                if deepest <= 1 { break }
            }
            print("gallery scroll: deepest id \(deepest), most thumbnails in the DOM \(most)")
            XCTAssertLessThan(most, 500)
            XCTAssertLessThan(deepest, 2500, "scrolling went deep into the store")
        }
    }
}
