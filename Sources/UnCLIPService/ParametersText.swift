import Foundation
import UnCLIPStore

extension RecordedSettings {
    /// The `parameters` text format new generations are written with (see `parametersText`).
    public static let currentParametersFormat = 2
}

/// The AUTOMATIC1111-style "parameters" text stored in each PNG, built only from recorded data so that
/// `regenerate` writes the same bytes (no timestamps, no paths that may change).
///
/// Format 2 (`parametersFormat` 2) is what A1111's PNG Info reads back: its sampler names ("Euler a",
/// "DPM++ 2M Karras"), `Model hash` and `Denoising strength`. Generations recorded before it (no
/// `parametersFormat`) keep format 1, so that regenerating them still gives their recorded sha256.
public func parametersText(kind: GenerationKind, prompt: String, settings s: RecordedSettings, seed: UInt64, parents: [ParentLink]) -> String {
    var lines = [prompt]
    if let negative = s.negativePrompt, !negative.isEmpty { lines.append("Negative prompt: \(negative)") }
    let a1111 = (s.parametersFormat ?? 1) >= 2
    var fields: [(String, String)] = [
        ("Steps", "\(s.steps ?? 0)"),
        ("Sampler", (a1111 ? s.samplerName : nil) ?? s.schedulerName ?? "?"),
        ("CFG scale", "\(s.guidance ?? 0)"), ("Seed", "\(seed)"), ("Size", "\(s.width ?? 0)x\(s.height ?? 0)"),
    ]
    if a1111, let hash = s.modelHash { fields.append(("Model hash", hash)) }
    fields.append(("Model", s.modelName ?? "?"))
    func parent(_ role: String) -> String { parents.first { $0.role == role }.map { "\($0.id)" } ?? "?" }
    if let steps = s.priorSteps, kind == .textToImage || kind == .edit {
        fields += [("Prior steps", "\(steps)"), ("Prior guidance", "\(s.priorGuidance ?? 0)"),
                   ("Prior candidates", "\(s.priorCandidates ?? 0)")]
    }
    switch kind {
    case .textToImage, .source:
        break
    case .edit:
        fields += [("Init image", s.initImage ?? "?"), ("Denoising strength", "\(s.strength ?? 0)")]
    case .variation:
        fields.append(("Variation of", parents.isEmpty ? (s.sourceFile ?? "?") : "generation \(parent("source"))"))
    case .interpolation:
        fields += [("Interpolation", "generation \(parent("from")) to \(parent("to"))"),
                   ("Frame", "\(s.frame ?? 0) of \(s.frames ?? 0)"), ("t", String(format: "%.4f", s.t ?? 0))]
    case .textDiff:
        fields += [("Text diff of", "generation \(parent("source"))"), ("Toward", s.toward ?? ""), ("From", s.from ?? ""),
                   ("Amount", "\(s.amount ?? 0)")]
    }
    if let level = s.noiseLevel { fields.append(("Noise level", "\(level)")) }
    lines.append(fields.map { "\($0.0): \(a1111 ? quotedIfNeeded($0.1) : $0.1)" }.joined(separator: ", "))
    return lines.joined(separator: "\n")
}

/// A1111 quotes a value that holds a comma, colon or quote, so its infotext parser keeps it whole.
func quotedIfNeeded(_ value: String) -> String {
    guard value.contains(where: { $0 == "," || $0 == ":" || $0 == "\"" || $0 == "\n" }) else { return value }
    let escaped = value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
        .replacingOccurrences(of: "\n", with: "\\n")
    return "\"\(escaped)\""
}
