import Foundation
import UnCLIPImage
import UnCLIPPipelines
import UnCLIPTensor

/// One generated image and what the checker read from it.
public struct ShapesSample: Sendable {
    public let prompt: String
    public let seed: UInt64
    public let stated: [String: String]
    public let analysis: ShapesAnalysis
    public let image: RGBImage
    /// The embedding the decoder drew (the prior's choice).
    public let imageEmbeds: Tensor
    /// The CLIP embedding of the finished picture (the model's image encoder), nil without one.
    public let pictureEmbeds: Tensor?
    public let priorScores: [Float]
}

/// Accuracy figures of a shapes evaluation.
public struct ShapesReport: Sendable {
    public var samples: [ShapesSample] = []
    /// attribute → (correct, stated) over the prompts that state it.
    public var accuracy: [String: (Int, Int)] = [:]
    /// Variations (noise level 0, new seed) of the embedding the picture was drawn from, as `vary ID` makes them,
    /// that keep colour and shape, of those tried; and how many differ in pixels.
    public var variationsKept = (0, 0)
    public var variationsDiffer = 0
    /// The same from the picture's own CLIP embedding (DALL·E 2's variations of an outside image, `vary --image`).
    public var variationsFromPictureKept = (0, 0)
    /// Attribute queries whose top-ranked image matches, of those asked: ranked as `search` ranks
    /// (`SearchRanking.pictureAndDecoder`, as for text queries), by the pictures' CLIP embeddings alone, and by the
    /// prior's embeddings alone.
    public var searchTopMatches = (0, 0)
    public var searchByPictureTopMatches = (0, 0)
    public var searchByPriorTopMatches = (0, 0)

    public func percent(_ p: (Int, Int)) -> Double { p.1 == 0 ? 0 : 100 * Double(p.0) / Double(p.1) }
}

/// Generates for each prompt and measures the images with the pixel checker.
public struct ShapesEvaluation {
    public let pipeline: StableUnCLIPPipeline
    public var prior = PriorSettings()
    public var decoder = DecoderSettings()
    public var seed: UInt64 = 1000

    public init(pipeline: StableUnCLIPPipeline) { self.pipeline = pipeline }

    public func run(prompts: [String], variations: Int, searchQueries: Bool,
                    progress: (String, Int, Int) throws -> Void = { _, _, _ in }) throws -> ShapesReport {
        var report = ShapesReport()
        for (i, prompt) in prompts.enumerated() {
            let stated = try ShapesWorld.parse(prompt)
            let s = seed + UInt64(i)
            let g = try pipeline.textToImage(prompt: prompt, priorSettings: prior, settings: decoder, seed: s)
            let a = try ShapesChecker.analyze(pixels: g.image.pixels, width: g.image.width, height: g.image.height)
            for (k, v) in stated {
                var acc = report.accuracy[k] ?? (0, 0)
                acc.1 += 1
                if a[k] == v { acc.0 += 1 }
                report.accuracy[k] = acc
            }
            let picture = pipeline.decoder.imageEmbedder == nil ? nil : try pipeline.embed(image: g.image)
            report.samples.append(ShapesSample(prompt: prompt, seed: s, stated: stated, analysis: a, image: g.image,
                                               imageEmbeds: g.imageEmbeds, pictureEmbeds: picture, priorScores: g.prior?.scores ?? []))
            try progress("generate", i + 1, prompts.count)
        }

        // Variations: the stored embedding decoded again with a new seed should keep colour and shape.
        let picks = report.samples.prefix(variations)
        for (i, sample) in picks.enumerated() {
            for fromPicture in [false, true] {
                guard let embeds = fromPicture ? sample.pictureEmbeds : sample.imageEmbeds else { continue }
                let v = try pipeline.variation(imageEmbeds: embeds, settings: decoder, seed: sample.seed &+ 7919)
                let a = try ShapesChecker.analyze(pixels: v.image.pixels, width: v.image.width, height: v.image.height)
                let kept = a.colour == sample.analysis.colour && a.shape == sample.analysis.shape
                if fromPicture {
                    report.variationsFromPictureKept.1 += 1
                    if kept { report.variationsFromPictureKept.0 += 1 }
                } else {
                    report.variationsKept.1 += 1
                    if kept { report.variationsKept.0 += 1 }
                    if v.image.pixels != sample.image.pixels { report.variationsDiffer += 1 }
                }
            }
            try progress("vary", i + 1, picks.count)
        }

        // Search: rank the gallery by cosine of image embeddings with the query's CLIP text embedding.
        if searchQueries, let priorPipe = pipeline.prior {
            var queries: [(String, String)] = []
            for (c, _) in ShapesWorld.colours { for s in ShapesWorld.shapes { queries.append((c, s)) } }
            for (i, (colour, shape)) in queries.enumerated() {
                // Only ask for what the gallery holds, as a user would.
                guard report.samples.contains(where: { $0.analysis.colour == colour && $0.analysis.shape == shape }) else { continue }
                let q = try priorPipe.encode("a \(colour) \(shape)").textEmbeds
                func matches(_ s: ShapesSample) -> Bool { s.analysis.colour == colour && s.analysis.shape == shape }
                let unitQuery = SearchRanking.picture.vector(picture: q.scalars, decoder: nil)!
                func score(_ s: ShapesSample) -> Double {
                    let v = SearchRanking.pictureAndDecoder.vector(picture: s.pictureEmbeds?.scalars, decoder: s.imageEmbeds.scalars) ?? []
                    return zip(v, unitQuery).reduce(0) { $0 + Double($1.0) * Double($1.1) }
                }
                let scores = report.samples.map(score)
                let top = report.samples[scores.indices.max { scores[$0] < scores[$1] }!]
                report.searchTopMatches.1 += 1
                if matches(top) { report.searchTopMatches.0 += 1 }
                if report.samples.allSatisfy({ $0.pictureEmbeds != nil }) {
                    let top = report.samples.max { cosine($0.pictureEmbeds!, q) < cosine($1.pictureEmbeds!, q) }!
                    report.searchByPictureTopMatches.1 += 1
                    if matches(top) { report.searchByPictureTopMatches.0 += 1 }
                }
                let byPrior = report.samples.max { cosine($0.imageEmbeds, q) < cosine($1.imageEmbeds, q) }!
                report.searchByPriorTopMatches.1 += 1
                if matches(byPrior) { report.searchByPriorTopMatches.0 += 1 }
                try progress("search", i + 1, queries.count)
            }
        }
        return report
    }
}

extension ShapesEvaluation {
    /// The ceiling the VAE sets: each prompt's attributes rendered exactly (the ones it omits filled in by
    /// cycling through the world's values), encoded to the latent mean and decoded; what the checker reads
    /// back, per stated attribute. No decoder drawing through this VAE can do better.
    public func vaeCeiling(prompts: [String]) throws -> [String: (Int, Int)] {
        let vae = try pipeline.decoder.base.vae.get()
        var accuracy: [String: (Int, Int)] = [:]
        for (i, prompt) in prompts.enumerated() {
            let stated = try ShapesWorld.parse(prompt)
            func pick(_ key: String, _ values: [String]) -> String { stated[key] ?? values[i % values.count] }
            let px = ShapesWorld.render(shape: pick("shape", ShapesWorld.shapes), colour: pick("colour", ShapesWorld.colours.map(\.0)),
                                        size: pick("size", ShapesWorld.sizes.map(\.0)), position: pick("position", ShapesWorld.positions.map(\.0)),
                                        background: pick("background", ShapesWorld.backgrounds.map(\.0)), dx: i % 3 - 1, dy: (i / 3) % 3 - 1)
            let image = try upscale(RGBImage(width: ShapesWorld.size, height: ShapesWorld.size, pixels: px), to: pipeline.decoder.defaultSize)
            let back = try tensorToImage(try vae.decode(try vae.encodeMean(try pipeline.decoder.base.initTensor(image))))
            let a = try ShapesChecker.analyze(pixels: back.pixels, width: back.width, height: back.height)
            for (k, v) in stated {
                var acc = accuracy[k] ?? (0, 0)
                acc.1 += 1
                if a[k] == v { acc.0 += 1 }
                accuracy[k] = acc
            }
        }
        return accuracy
    }
}

/// A grid of images with a caption strip under each (a built-in 5×7 pixel font), as a PNG-ready image.
public func contactSheet(_ items: [(RGBImage, String)], columns: Int = 6, scale: Int = 3, captionWidth: Int = 30) throws -> RGBImage {
    let cell = items.map { $0.0.width }.max() ?? 32
    let cellW = max(cell * scale, captionWidth * 6 + 4), lines = 3, textH = lines * 9 + 4
    let cellH = cell * scale + textH
    let rows = (items.count + columns - 1) / columns
    let w = columns * (cellW + 4) + 4, h = rows * (cellH + 4) + 4
    var px = [UInt8](repeating: 255, count: w * h * 3)
    for (k, (img, text)) in items.enumerated() {
        let ox = 4 + (k % columns) * (cellW + 4), oy = 4 + (k / columns) * (cellH + 4)
        for y in 0..<(img.height * scale) { for x in 0..<(img.width * scale) {
            let s = ((y / scale) * img.width + x / scale) * 3, d = ((oy + y) * w + ox + x) * 3
            px[d] = img.pixels[s]; px[d + 1] = img.pixels[s + 1]; px[d + 2] = img.pixels[s + 2]
        } }
        // Word-wrap the caption into lines of captionWidth characters.
        var wrapped: [String] = [], line = ""
        for word in text.split(separator: " ") {
            if line.count + word.count + 1 > captionWidth { wrapped.append(line); line = "" }
            line += (line.isEmpty ? "" : " ") + word
        }
        wrapped.append(line)
        for (li, l) in wrapped.prefix(lines).enumerated() {
            PixelFont.draw(l, into: &px, width: w, x: ox, y: oy + img.height * scale + 3 + li * 9)
        }
    }
    return try RGBImage(width: w, height: h, pixels: px)
}

/// How image-to-image moves pictures toward a prompt: for rendered world images that are not the target,
/// the share whose edit reads as the target (turned) and the share that still reads as the source (kept).
public struct EditReport: Sendable {
    public var strength: Float
    public var turned = 0
    public var kept = 0
    public var total = 0
}

extension ShapesEvaluation {
    /// Edits `count` rendered pictures (varied colour/shape/position/background) toward "a COLOUR SHAPE".
    public func runEdit(colour: String = "green", shape: String = "triangle", strengths: [Float], count: Int) throws -> [EditReport] {
        var sources: [(RGBImage, ShapesAnalysis)] = []
        var i = 0
        while sources.count < count {
            let c = ShapesWorld.colours[i % ShapesWorld.colours.count].0, s = ShapesWorld.shapes[(i / 2) % 3]
            let p = ShapesWorld.positions[(i / 3) % 5].0, b = ShapesWorld.backgrounds[(i / 5) % 4].0
            i += 1
            if c == colour || s == shape { continue }
            let px = ShapesWorld.render(shape: s, colour: c, size: "large", position: p, background: b)
            let a = try ShapesChecker.analyze(pixels: px, width: ShapesWorld.size, height: ShapesWorld.size)
            sources.append((try upscale(RGBImage(width: ShapesWorld.size, height: ShapesWorld.size, pixels: px),
                                        to: pipeline.decoder.defaultSize), a))
        }
        return try strengths.map { strength in
            var r = EditReport(strength: strength)
            var d = decoder
            d.strength = strength
            for (k, (image, source)) in sources.enumerated() {
                var stages = PipelineStages()
                let g = try pipeline.imageToImage(prompt: "a \(colour) \(shape)", initImage: image, priorSettings: prior, settings: d,
                                                  seed: seed + UInt64(k), stages: &stages)
                let a = try ShapesChecker.analyze(pixels: g.image.pixels, width: g.image.width, height: g.image.height)
                r.total += 1
                if a.colour == colour && a.shape == shape { r.turned += 1 }
                if a.colour == source.colour && a.shape == source.shape && a.position == source.position { r.kept += 1 }
            }
            return r
        }
    }
}

/// Nearest-neighbour upscale of a square image to `size` pixels (the world is drawn at 32×32).
func upscale(_ image: RGBImage, to size: Int) throws -> RGBImage {
    guard size != image.width else { return image }
    var px = [UInt8](repeating: 0, count: size * size * 3)
    for y in 0..<size { for x in 0..<size {
        let s = ((y * image.height / size) * image.width + x * image.width / size) * 3
        for c in 0..<3 { px[(y * size + x) * 3 + c] = image.pixels[s + c] }
    } }
    return try RGBImage(width: size, height: size, pixels: px)
}
