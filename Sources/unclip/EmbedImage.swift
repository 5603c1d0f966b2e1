import ArgumentParser
import Foundation
import UnCLIPEngine
import UnCLIPImage
import UnCLIPModels
import UnCLIPTensor
import UnCLIPWeights

struct EmbedImage: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "embed-image",
        abstract: "Embed PNG images with a CLIP vision encoder (CLIPImageProcessor preprocessing).",
        discussion: "Writes image_embeds [B,P] and pixel_values [B,3,S,S] as safetensors and prints a summary as JSON.")

    @Argument(help: "Pictures: PNG, JPEG or WebP (EXIF orientation applied, transparency dropped, as diffusers' load_image).") var images: [String]

    @Option(help: "Vision encoder folder (CLIPVisionModelWithProjection).") var imageEncoder: String

    @Option(help: "Folder with preprocessor_config.json. Default: the image encoder's sibling feature_extractor/.") var featureExtractor: String?

    @Option(help: "Output .safetensors file.") var output: String?

    func run() throws {
        let encoderURL = URL(fileURLWithPath: imageEncoder)
        try ModelResolver.checkFolder(encoderURL)
        let fx = featureExtractor.map { URL(fileURLWithPath: $0) }
            ?? encoderURL.deletingLastPathComponent().appendingPathComponent("feature_extractor")
        try ModelResolver.checkFolder(fx)
        let processor = try CLIPImageProcessor(contentsOf: fx.appendingPathComponent("preprocessor_config.json"))
        let model = try CLIPVisionModel(folder: ModelFolder(encoderURL))
        let pixels = try images.map { try processor.preprocess(ImageFile.read(URL(fileURLWithPath: $0))) }
        let (c, h, w) = (pixels[0].channels, pixels[0].height, pixels[0].width)
        let batch = Tensor(shape: [pixels.count, c, h, w], data: pixels.flatMap(\.data))
        let out = try model(pixelValues: batch)
        let embeds = out.imageEmbeds ?? out.poolerOutput
        if let output {
            try SafeTensorsWriter.write([("image_embeds", .float32(embeds)), ("pixel_values", .float32(batch))],
                                        to: URL(fileURLWithPath: output))
        }
        let dim = embeds.shape[1]
        let norms: [Float] = (0..<embeds.shape[0]).map { i in
            var s: Float = 0
            for j in 0..<dim { let v = embeds[flat: i * dim + j]; s += v * v }
            return s.squareRoot()
        }
        struct Summary: Encodable { var images: Int, embedding_dim: Int, norms: [Float] }
        try printJSON(Summary(images: images.count, embedding_dim: dim, norms: norms))
    }
}
