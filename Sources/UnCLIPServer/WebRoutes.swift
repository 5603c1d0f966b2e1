import Foundation
import Hummingbird

/// The gallery: static HTML, CSS and an ES module, compiled into the binary (`embedInCode`), served at `/`.
/// `UNCLIP_WEB_DIR` serves them from a folder instead, so the page can be edited without rebuilding.
struct WebRoutes {
    let server: UnCLIPServer

    struct Asset { let bytes: [UInt8]; let type: String }

    static let assets: [String: Asset] = [
        "index.html": Asset(bytes: PackageResources.index_html, type: "text/html; charset=utf-8"),
        "app.js": Asset(bytes: PackageResources.app_js, type: "text/javascript; charset=utf-8"),
        "style.css": Asset(bytes: PackageResources.style_css, type: "text/css; charset=utf-8"),
    ]

    func add(to router: Router<ServerContext>) {
        router.get("/") { _, _ in serve("index.html") }
        router.get("app.js") { _, _ in serve("app.js") }
        router.get("style.css") { _, _ in serve("style.css") }
    }

    private func serve(_ name: String) -> Response {
        let asset = Self.assets[name]!
        var headers = HTTPFields()
        // Revalidate every time: the page is small, and a new server must not run an old script.
        headers[.cacheControl] = "no-cache"
        if let dir = server.configuration.webDirectory,
           let data = FileManager.default.contents(atPath: URL(fileURLWithPath: dir).appendingPathComponent(name).path) {
            return Reply.raw(data, type: asset.type, headers: headers)
        }
        return Reply.raw(Data(asset.bytes), type: asset.type, headers: headers)
    }
}
