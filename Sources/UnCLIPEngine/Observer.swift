import Foundation
import UnCLIPImage

/// What an observer answers to each progress report.
public enum RunDecision: Sendable {
    case proceed
    /// Stop the run at this step: the engine throws `EngineError.cancelled` and records nothing.
    case stop
}

/// One step of a long run.
public struct ProgressEvent: Sendable, Equatable {
    /// "prior", "denoise", or "load".
    public var stage: String
    public var step: Int
    public var total: Int
    /// Which image of the request this is (0-based) and how many it makes.
    public var image: Int
    public var images: Int
    /// Seconds since this stage started, and the estimated seconds left in it (nil until a step is done).
    public var elapsed: Double
    public var eta: Double?

    public init(stage: String, step: Int, total: Int, image: Int = 0, images: Int = 1, elapsed: Double = 0, eta: Double? = nil) {
        self.stage = stage; self.step = step; self.total = total; self.image = image; self.images = images
        self.elapsed = elapsed; self.eta = eta
    }

    /// The fraction of this image's current stage that is done.
    public var fraction: Double { total > 0 ? Double(step) / Double(total) : 0 }
}

/// Watches a request: progress (and the chance to stop it), step previews and warnings. Called on the thread
/// that runs the request; an observer shared between threads must be thread-safe.
public protocol GenerationObserver: AnyObject {
    func progress(_ event: ProgressEvent) -> RunDecision
    /// A decoded preview of the denoiser's x0 prediction (only when the request asks for previews).
    func preview(image: Int, step: Int, picture: RGBImage)
    func warning(_ message: String)
}

extension GenerationObserver {
    public func preview(image: Int, step: Int, picture: RGBImage) {}
    public func warning(_ message: String) {}
}

/// A flag any thread may raise to stop runs that check it (Ctrl-C, a cancelled job).
public final class CancellationFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var raised = false
    public init() {}
    public var isRaised: Bool { lock.withLock { raised } }
    public func raise() { lock.withLock { raised = true } }
}

/// An observer from closures (tests, small front ends).
public final class ClosureObserver: GenerationObserver, @unchecked Sendable {
    let onProgress: (ProgressEvent) -> RunDecision
    let onPreview: (Int, Int, RGBImage) -> Void
    let onWarning: (String) -> Void

    public init(progress: @escaping (ProgressEvent) -> RunDecision = { _ in .proceed },
                preview: @escaping (Int, Int, RGBImage) -> Void = { _, _, _ in },
                warning: @escaping (String) -> Void = { _ in }) {
        onProgress = progress; onPreview = preview; onWarning = warning
    }

    public func progress(_ event: ProgressEvent) -> RunDecision { onProgress(event) }
    public func preview(image: Int, step: Int, picture: RGBImage) { onPreview(image, step, picture) }
    public func warning(_ message: String) { onWarning(message) }
}

/// The pipelines' callbacks for one image, built from an observer: adds the ETA, turns `.stop` into
/// `EngineError.cancelled`, and says each distinct warning once per request.
public final class RunContext {
    let observer: GenerationObserver?
    let image: Int
    let images: Int
    private var warned: Set<String>
    /// The stage being reported, when it started (the previous report's time), and the previous report's time.
    private var stage: String?
    private var stageStart: UInt64
    private var last: UInt64

    public init(observer: GenerationObserver?, image: Int, images: Int, warned: Set<String> = []) {
        self.observer = observer; self.image = image; self.images = images; self.warned = warned
        last = DispatchTime.now().uptimeNanoseconds
        stageStart = last
    }

    /// Warnings already said in this request (carried to the next image's context).
    public var warningsSaid: Set<String> { warned }

    public func progress(_ stage: String, _ step: Int, _ total: Int) throws {
        let now = DispatchTime.now().uptimeNanoseconds
        // A stage's first step was computed since the previous report, so the stage started then.
        if stage != self.stage { self.stage = stage; stageStart = last }
        last = now
        let elapsed = Double(now - stageStart) / 1e9
        let eta = step > 0 ? elapsed / Double(step) * Double(max(total - step, 0)) : nil
        let event = ProgressEvent(stage: stage, step: step, total: total, image: image, images: images, elapsed: elapsed, eta: eta)
        if observer?.progress(event) == .stop { throw EngineError.cancelled }
    }

    /// Asks the observer before work starts (step 0), so a request cancelled while queued does no work.
    public func checkpoint(_ stage: String, total: Int) throws { try progress(stage, 0, total) }

    public func preview(_ step: Int, _ picture: RGBImage) { observer?.preview(image: image, step: step, picture: picture) }

    public func warning(_ message: String) {
        guard warned.insert(message).inserted else { return }
        observer?.warning(message)
    }
}
