import Foundation

/// The diffusers configs a single file of a known family implies when no template folder is given: those of the
/// published pipelines every SD 1.x / 2.x fine-tune shares (stable-diffusion-v1-5, stable-diffusion-2-1 and
/// -2-1-base), as diffusers' `from_single_file` fetches them. A file whose shapes differ is refused before any
/// conversion (`check`), naming the weight, so a non-standard model asks for a template rather than loading wrong.
public enum SingleFileConfigs {
    static func vae(vPrediction: Bool) -> [String: Any] { [
        "_class_name": "AutoencoderKL", "act_fn": "silu", "block_out_channels": [128, 256, 512, 512],
        "down_block_types": Array(repeating: "DownEncoderBlock2D", count: 4), "up_block_types": Array(repeating: "UpDecoderBlock2D", count: 4),
        "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32,
        "sample_size": vPrediction ? 768 : 512, "scaling_factor": 0.18215,
    ] }

    static func unet(_ family: SingleFileFamily, vPrediction: Bool) -> [String: Any] {
        var c: [String: Any] = [
            "_class_name": "UNet2DConditionModel", "act_fn": "silu", "block_out_channels": [320, 640, 1280, 1280],
            "center_input_sample": false, "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
            "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
            "downsample_padding": 1, "flip_sin_to_cos": true, "freq_shift": 0, "in_channels": 4, "out_channels": 4,
            "layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-5, "norm_num_groups": 32, "sample_size": 64,
        ]
        if family == .sd2 {
            // SD 2: 64-wide heads (the config's "attention_head_dim" is diffusers' misnamed head count), linear
            // projections, OpenCLIP's 1024-wide context; the 768-v model upcasts attention to fp32.
            c["attention_head_dim"] = [5, 10, 20, 20]
            c["cross_attention_dim"] = 1024
            c["use_linear_projection"] = true
            c["upcast_attention"] = vPrediction
            c["sample_size"] = vPrediction ? 96 : 64
        } else {
            c["attention_head_dim"] = 8
            c["cross_attention_dim"] = 768
        }
        return c
    }

    static func textEncoder(_ family: SingleFileFamily) -> [String: Any] {
        var c: [String: Any] = [
            "architectures": ["CLIPTextModel"], "model_type": "clip_text_model", "vocab_size": 49408, "max_position_embeddings": 77,
            "layer_norm_eps": 1e-5, "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1, "attention_dropout": 0.0,
            "initializer_factor": 1.0, "initializer_range": 0.02,
        ]
        if family == .sd2 {
            // OpenCLIP ViT-H's text tower without its last layer (SD 2 conditions on the penultimate one).
            c.merge(["hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 16, "num_hidden_layers": 23,
                     "hidden_act": "gelu", "projection_dim": 512]) { $1 }
        } else {
            c.merge(["hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12, "num_hidden_layers": 12,
                     "hidden_act": "quick_gelu", "projection_dim": 768]) { $1 }
        }
        return c
    }

    static func scheduler(_ family: SingleFileFamily, predictionType: String) -> [String: Any] {
        var c: [String: Any] = [
            "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000,
            "set_alpha_to_one": false, "steps_offset": 1, "prediction_type": predictionType, "timestep_spacing": "leading",
        ]
        if family == .sd2 {
            c.merge(["_class_name": "DDIMScheduler", "clip_sample": false]) { $1 }
        } else {
            c.merge(["_class_name": "PNDMScheduler", "skip_prk_steps": true]) { $1 }
        }
        return c
    }

    /// Weights whose shapes tell the standard architecture from another one: (key, shape in the standard model).
    static func signature(_ family: SingleFileFamily) -> [(String, [Int])] {
        let context = family == .sd2 ? 1024 : 768
        var keys: [(String, [Int])] = [
            ("model.diffusion_model.input_blocks.0.0.weight", [320, 4, 3, 3]),
            ("model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight", [320, context]),
            ("model.diffusion_model.output_blocks.11.0.skip_connection.weight", [320, 640, 1, 1]),
            ("first_stage_model.encoder.conv_in.weight", [128, 3, 3, 3]),
        ]
        keys.append(family == .sd2 ? ("cond_stage_model.model.token_embedding.weight", [49408, 1024])
                                   : ("cond_stage_model.transformer.text_model.final_layer_norm.weight", [768]))
        return keys
    }

    /// Refuses a file whose architecture is not the standard one of its family.
    static func check(_ source: any WeightSource, family: SingleFileFamily, path: String) throws {
        for (key, shape) in signature(family) {
            var found = source.tensors[key]?.shape
            if found == nil, key.hasPrefix("cond_stage_model.transformer.text_model.") {
                found = source.tensors[key.replacingOccurrences(of: "text_model.", with: "")]?.shape
            }
            guard let found, found == shape else {
                throw WeightError.badCheckpoint(path: path, reason: "'\(key)' has shape \(found.map { "\($0)" } ?? "none"), not the standard \(family.rawValue) shape \(shape): a non-standard architecture needs a template folder with its configs")
            }
        }
    }

    /// (Re)writes the component and scheduler configs of `family` for `predictionType` into a diffusers folder: what
    /// differs between SD 2's 768-v and 512 base models, once the prediction type is known.
    public static func writeConfigs(family: SingleFileFamily, predictionType: String, into folder: URL) throws {
        let v = predictionType == "v_prediction"
        try write(["unet/config.json": unet(family, vPrediction: v), "vae/config.json": vae(vPrediction: v),
                   "text_encoder/config.json": textEncoder(family),
                   "scheduler/scheduler_config.json": scheduler(family, predictionType: predictionType)], into: folder)
    }

    private static func write(_ files: [String: [String: Any]], into folder: URL) throws {
        for (name, object) in files {
            let url = folder.appendingPathComponent(name)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try AtomicFile.write(try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys]), to: url)
        }
    }

    /// Writes a template folder for `family` (model_index.json, component configs, scheduler) at `folder`, with the
    /// tokenizer files copied from `tokenizer` (a CLIPTokenizer folder: vocab.json, merges.txt, …; SD 2 pads with "!").
    public static func writeTemplate(family: SingleFileFamily, predictionType: String, tokenizer: URL, to folder: URL) throws {
        guard SingleFileFamily.converted.contains(family) else { throw WeightError.badConfig(path: folder.path, reason: "no standard configs for \(family.rawValue)") }
        let fm = FileManager.default
        let index: [String: Any] = [
            "_class_name": "StableDiffusionPipeline", "requires_safety_checker": false,
            "feature_extractor": [NSNull(), NSNull()], "safety_checker": [NSNull(), NSNull()], "image_encoder": [NSNull(), NSNull()],
            "scheduler": ["diffusers", family == .sd2 ? "DDIMScheduler" : "PNDMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
        ]
        try write(["model_index.json": index], into: folder)
        try writeConfigs(family: family, predictionType: predictionType, into: folder)
        guard fm.fileExists(atPath: tokenizer.appendingPathComponent("vocab.json").path) else {
            throw WeightError.missingFile(path: tokenizer.appendingPathComponent("vocab.json").path, what: "CLIP tokenizer vocabulary")
        }
        try fm.copyItem(at: tokenizer, to: folder.appendingPathComponent("tokenizer"))
    }
}
