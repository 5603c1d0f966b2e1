import Foundation

/// The model families a single-file checkpoint (A1111 / ComfyUI `.safetensors` or `.ckpt`, in the original
/// CompVis/LDM layout) can hold, told apart by identifying keys as A1111 and diffusers do.
public enum SingleFileFamily: String, Sendable, CaseIterable {
    case sd1 = "Stable Diffusion 1.x"
    case sd2 = "Stable Diffusion 2.x"
    case stableUnCLIP = "Stable unCLIP 2.1"
    case sdxl = "Stable Diffusion XL"
    case inpainting = "Stable Diffusion inpainting"
    case pix2pix = "InstructPix2Pix"
    case upscaler = "Stable Diffusion x4 upscaler"
    case controlNet = "ControlNet"

    /// Families whose layout `SingleFileLayout` maps (the others are refused by name).
    public static let converted: [SingleFileFamily] = [.sd1, .sd2]

    /// The family of a checkpoint with these keys (and this UNet input width), or nil when it is no Stable
    /// Diffusion checkpoint at all. Order matters: unCLIP and inpainting files also carry SD 2 / SD 1 keys.
    public static func detect(keys: Set<String>, unetInputChannels: Int?) -> SingleFileFamily? {
        let has = { (prefix: String) in keys.contains { $0.hasPrefix(prefix) } }
        if has("control_model.") { return .controlNet }
        if has("conditioner.embedders.") { return .sdxl }
        if has("embedder.model.visual.") || has("noise_augmentor.") { return .stableUnCLIP }
        guard has(SingleFileLayout.unetPrefix) else { return nil }
        switch unetInputChannels {
        case 9?: return .inpainting
        case 8?: return .pix2pix
        case 7?: return .upscaler
        default: break
        }
        if has("cond_stage_model.model.transformer.resblocks.") { return .sd2 }
        if has("cond_stage_model.transformer.") { return .sd1 }
        return nil
    }
}

/// How a value is taken from the original tensor.
public enum SourceTransform: Sendable, Equatable {
    case identity
    /// A 1x1 convolution weight [o, i, 1, 1] (or a 1-D conv [o, i, 1]) read as a linear weight [o, i]
    /// (the original VAE's attention projections).
    case squeezeConv
    /// Part `index` of `parts` equal slices along the first axis (OpenCLIP's fused q/k/v `in_proj`).
    case chunk(index: Int, parts: Int)
}

/// One diffusers weight and where it comes from in the single file.
public struct MappedWeight: Sendable, Equatable {
    public let target: String
    public let source: String
    public let transform: SourceTransform
}

/// The original → diffusers key mapping of Stable Diffusion 1.x / 2.x single files, as rule lists: each rule is an
/// original key pattern (`#` an index, `*` the rest of the key) and the diffusers key it becomes. The UNet's
/// numbering needs `layersPerBlock` (a down level is `layers_per_block` blocks plus a downsampler; an up level one
/// more) and which up levels have attention (their upsampler is block 2, not 1); the VAE's up levels are numbered
/// in reverse. The same mapping as diffusers' `convert_ldm_unet_checkpoint`, `convert_ldm_vae_checkpoint`,
/// `convert_ldm_clip_checkpoint` and `convert_open_clip_checkpoint`, stated as data.
public struct SingleFileLayout: Sendable {
    public static let unetPrefix = "model.diffusion_model."
    public static let vaePrefix = "first_stage_model."
    public static let clipPrefix = "cond_stage_model.transformer."
    public static let openCLIPPrefix = "cond_stage_model.model."

    public let family: SingleFileFamily
    public let layersPerBlock: Int
    public let vaeLevels: Int
    public let textLayers: Int

    public init(family: SingleFileFamily, layersPerBlock: Int, vaeLevels: Int, textLayers: Int) {
        self.family = family; self.layersPerBlock = layersPerBlock; self.vaeLevels = vaeLevels; self.textLayers = textLayers
    }

    typealias Rule = (pattern: String, target: (_ n: [Int], _ rest: String) -> String)

    /// Inner names of a resnet block: original → diffusers.
    static let unetResnetNames = [("in_layers.0", "norm1"), ("in_layers.2", "conv1"), ("out_layers.0", "norm2"),
                                  ("out_layers.3", "conv2"), ("emb_layers.1", "time_emb_proj"), ("skip_connection", "conv_shortcut")]
    static let vaeResnetNames = [("nin_shortcut", "conv_shortcut")]
    static let vaeAttentionNames = [("norm", "group_norm"), ("q", "to_q"), ("k", "to_k"), ("v", "to_v"), ("proj_out", "to_out.0")]
    static let openCLIPNames = [("ln_1", "layer_norm1"), ("ln_2", "layer_norm2"), ("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2"),
                                ("attn.out_proj", "self_attn.out_proj")]

    var unetRules: [Rule] {
        let l = layersPerBlock + 1
        func rn(_ s: String) -> String { SingleFileLayout.rename(s, SingleFileLayout.unetResnetNames) }
        return [
            ("time_embed.0.*", { _, r in "time_embedding.linear_1.\(r)" }),
            ("time_embed.2.*", { _, r in "time_embedding.linear_2.\(r)" }),
            ("input_blocks.0.0.*", { _, r in "conv_in.\(r)" }),
            ("out.0.*", { _, r in "conv_norm_out.\(r)" }),
            ("out.2.*", { _, r in "conv_out.\(r)" }),
            ("input_blocks.#.0.op.*", { n, r in "down_blocks.\((n[0] - 1) / l).downsamplers.0.conv.\(r)" }),
            ("input_blocks.#.0.*", { n, r in "down_blocks.\((n[0] - 1) / l).resnets.\((n[0] - 1) % l).\(rn(r))" }),
            ("input_blocks.#.1.*", { n, r in "down_blocks.\((n[0] - 1) / l).attentions.\((n[0] - 1) % l).\(r)" }),
            ("middle_block.0.*", { _, r in "mid_block.resnets.0.\(rn(r))" }),
            ("middle_block.1.*", { _, r in "mid_block.attentions.0.\(r)" }),
            ("middle_block.2.*", { _, r in "mid_block.resnets.1.\(rn(r))" }),
            ("output_blocks.#.0.*", { n, r in "up_blocks.\(n[0] / l).resnets.\(n[0] % l).\(rn(r))" }),
            // The upsampler is block 1 of an up level's last entry without attention, block 2 with it.
            ("output_blocks.#.1.conv.*", { n, r in "up_blocks.\(n[0] / l).upsamplers.0.conv.\(r)" }),
            ("output_blocks.#.2.conv.*", { n, r in "up_blocks.\(n[0] / l).upsamplers.0.conv.\(r)" }),
            ("output_blocks.#.1.*", { n, r in "up_blocks.\(n[0] / l).attentions.\(n[0] % l).\(r)" }),
        ]
    }

    var vaeRules: [Rule] {
        let top = vaeLevels - 1
        func rn(_ s: String) -> String { SingleFileLayout.rename(s, SingleFileLayout.vaeResnetNames) }
        func attn(_ s: String) -> String { SingleFileLayout.rename(s, SingleFileLayout.vaeAttentionNames) }
        var rules: [Rule] = []
        for side in ["encoder", "decoder"] {
            rules += [
                ("\(side).conv_in.*", { _, r in "\(side).conv_in.\(r)" }),
                ("\(side).conv_out.*", { _, r in "\(side).conv_out.\(r)" }),
                ("\(side).norm_out.*", { _, r in "\(side).conv_norm_out.\(r)" }),
                ("\(side).mid.block_1.*", { _, r in "\(side).mid_block.resnets.0.\(rn(r))" }),
                ("\(side).mid.block_2.*", { _, r in "\(side).mid_block.resnets.1.\(rn(r))" }),
                ("\(side).mid.attn_1.*", { _, r in "\(side).mid_block.attentions.0.\(attn(r))" }),
            ]
        }
        rules += [
            ("encoder.down.#.block.#.*", { n, r in "encoder.down_blocks.\(n[0]).resnets.\(n[1]).\(rn(r))" }),
            ("encoder.down.#.downsample.conv.*", { n, r in "encoder.down_blocks.\(n[0]).downsamplers.0.conv.\(r)" }),
            ("decoder.up.#.block.#.*", { n, r in "decoder.up_blocks.\(top - n[0]).resnets.\(n[1]).\(rn(r))" }),
            ("decoder.up.#.upsample.conv.*", { n, r in "decoder.up_blocks.\(top - n[0]).upsamplers.0.conv.\(r)" }),
            ("quant_conv.*", { _, r in "quant_conv.\(r)" }),
            ("post_quant_conv.*", { _, r in "post_quant_conv.\(r)" }),
        ]
        return rules
    }

    /// OpenCLIP (SD 2) text tower → transformers CLIPTextModel (flat keys, as transformers ≥ 5.6 saves them).
    var openCLIPRules: [Rule] {
        [
            ("token_embedding.weight", { _, _ in "embeddings.token_embedding.weight" }),
            ("positional_embedding", { _, _ in "embeddings.position_embedding.weight" }),
            ("ln_final.*", { _, r in "final_layer_norm.\(r)" }),
            ("transformer.resblocks.#.*", { n, r in "encoder.layers.\(n[0]).\(SingleFileLayout.rename(r, SingleFileLayout.openCLIPNames))" }),
        ]
    }

    /// Buffers of the original training wrapper (its noise schedule, recomputed by the scheduler) and position ids
    /// (a constant range in transformers).
    static let ignoredKeys: Set<String> = [
        "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
        "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod", "posterior_variance",
        "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2", "logvar", "lvlb_weights",
        "cond_stage_model.transformer.text_model.embeddings.position_ids", "cond_stage_model.transformer.embeddings.position_ids",
    ]

    /// Original keys that map to nothing, on purpose: the EMA copy, the OpenCLIP projection and attention mask the
    /// diffusers text encoder has no use for, and OpenCLIP layers past the text encoder's depth (SD 2 takes the
    /// penultimate layer: diffusers' config has 23 of OpenCLIP's 24).
    func isIgnored(_ key: String) -> Bool {
        if key.hasPrefix("model_ema.") { return true }
        if key.hasPrefix(SingleFileLayout.openCLIPPrefix) {
            let rest = key.dropFirst(SingleFileLayout.openCLIPPrefix.count)
            if rest == "text_projection" || rest == "attn_mask" || rest == "logit_scale" { return true }
            if rest.hasPrefix("transformer.resblocks."), let layer = Int(rest.split(separator: ".")[2]), layer >= textLayers { return true }
            if rest.hasPrefix("visual.") { return true }
        }
        return SingleFileLayout.ignoredKeys.contains(key) || key.hasPrefix("first_stage_model.loss.")
    }

    /// The diffusers weights of each component ("unet", "vae", "text_encoder") and their sources. Every key of the
    /// file must be mapped or deliberately ignored: an unknown key means a layout this table does not describe,
    /// and is an error naming it rather than a model silently missing a weight.
    /// `ema`: take the UNet from the LitEma copy (`model_ema.<key without dots>`) instead.
    public func map(keys: [String], ema: Bool = false, path: String) throws -> [String: [MappedWeight]] {
        var out: [String: [MappedWeight]] = ["unet": [], "vae": [], "text_encoder": []]
        let keySet = Set(keys)
        for key in keys.sorted() {
            if key.hasPrefix(SingleFileLayout.unetPrefix) {
                let inner = String(key.dropFirst(SingleFileLayout.unetPrefix.count))
                guard let target = SingleFileLayout.apply(unetRules, to: inner) else { throw unmapped(key, path) }
                var source = key
                if ema {
                    source = "model_ema." + key.dropFirst("model.".count).replacingOccurrences(of: ".", with: "")
                    guard keySet.contains(source) else {
                        throw WeightError.badCheckpoint(path: path, reason: "no EMA copy of '\(key)' (expected '\(source)'); load the non-EMA weights instead")
                    }
                }
                out["unet"]!.append(MappedWeight(target: target, source: source, transform: .identity))
            } else if key.hasPrefix(SingleFileLayout.vaePrefix), !isIgnored(key) {
                let inner = String(key.dropFirst(SingleFileLayout.vaePrefix.count))
                guard let target = SingleFileLayout.apply(vaeRules, to: inner) else { throw unmapped(key, path) }
                let squeeze = inner.contains(".mid.attn_1.") && inner.hasSuffix(".weight") && !inner.contains(".norm.")
                out["vae"]!.append(MappedWeight(target: target, source: key, transform: squeeze ? .squeezeConv : .identity))
            } else if family == .sd1, key.hasPrefix(SingleFileLayout.clipPrefix), !isIgnored(key) {
                // Older SD 1 files lack transformers' `text_model.` level; both map to the flat keys.
                var inner = String(key.dropFirst(SingleFileLayout.clipPrefix.count))
                if inner.hasPrefix("text_model.") { inner = String(inner.dropFirst("text_model.".count)) }
                out["text_encoder"]!.append(MappedWeight(target: inner, source: key, transform: .identity))
            } else if family == .sd2, key.hasPrefix(SingleFileLayout.openCLIPPrefix), !isIgnored(key) {
                let inner = String(key.dropFirst(SingleFileLayout.openCLIPPrefix.count))
                // The fused q/k/v projection becomes three: rows [0, d), [d, 2d), [2d, 3d).
                let parts = inner.split(separator: ".")
                if parts.count == 5, parts[0] == "transformer", parts[1] == "resblocks", let layer = Int(parts[2]), parts[3] == "attn",
                   let leaf = ["in_proj_weight": "weight", "in_proj_bias": "bias"][String(parts[4])] {
                    for (i, p) in ["q", "k", "v"].enumerated() {
                        out["text_encoder"]!.append(MappedWeight(target: "encoder.layers.\(layer).self_attn.\(p)_proj.\(leaf)", source: key,
                                                                 transform: .chunk(index: i, parts: 3)))
                    }
                    continue
                }
                guard let target = SingleFileLayout.apply(openCLIPRules, to: inner) else { throw unmapped(key, path) }
                out["text_encoder"]!.append(MappedWeight(target: target, source: key, transform: .identity))
            } else if !isIgnored(key) && !key.hasPrefix("cond_stage_model.") {
                throw unmapped(key, path)
            }
        }
        for (component, weights) in out where weights.isEmpty {
            throw WeightError.badCheckpoint(path: path, reason: "no \(component) weights found for \(family.rawValue)")
        }
        return out
    }

    private func unmapped(_ key: String, _ path: String) -> WeightError {
        .badCheckpoint(path: path, reason: "key '\(key)' is not part of the \(family.rawValue) layout this build maps")
    }

    static func rename(_ s: String, _ names: [(String, String)]) -> String {
        for (from, to) in names where s.hasPrefix(from + ".") { return to + s.dropFirst(from.count) }
        return s
    }

    /// The first rule whose pattern matches `key`: segments equal, `#` an integer, a final `*` the rest (non-empty).
    static func apply(_ rules: [Rule], to key: String) -> String? {
        let parts = key.split(separator: ".", omittingEmptySubsequences: false)
        rules: for rule in rules {
            let pattern = rule.pattern.split(separator: ".")
            var numbers: [Int] = []
            for (i, p) in pattern.enumerated() {
                if p == "*" {
                    guard i < parts.count else { continue rules }
                    return rule.target(numbers, parts[i...].joined(separator: "."))
                }
                guard i < parts.count else { continue rules }
                if p == "#" {
                    guard let n = Int(parts[i]) else { continue rules }
                    numbers.append(n)
                } else if p != parts[i] { continue rules }
            }
            if pattern.count == parts.count { return rule.target(numbers, "") }
        }
        return nil
    }
}
