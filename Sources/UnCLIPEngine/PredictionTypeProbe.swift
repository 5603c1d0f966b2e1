import Foundation
import UnCLIPModels
import UnCLIPTensor
import UnCLIPWeights

/// AUTOMATIC1111's test of what an SD 2.x UNet predicts, for files that do not say (safetensors have no
/// `global_step`): run it once on a flat input at the last timestep; a v-prediction model (the 768-v one) answers far
/// below the input, a noise-prediction model (the 512 base one) does not. A1111's `is_using_v_parameterization_for_sd2`.
public enum PredictionTypeProbe {
    /// mean(unet(x, t = 999, context) − x) for x = 0.5 at [1, 4, 8, 8] and context = 0.5 at [1, 2, cross_attention_dim],
    /// as A1111 computes it.
    public static func statistic(unetFolder: URL) throws -> Float {
        let folder = try ModelFolder(unetFolder)
        let unet = try UNet2DConditionModel(folder: folder)
        let contextWidth: Int
        switch unet.config.crossAttentionDim {
        case let .one(v): contextWidth = v
        case let .list(l): contextWidth = l.first ?? 0
        }
        let x = Tensor(repeating: 0.5, shape: [1, unet.config.inChannels, 8, 8])
        let out = try unet(sample: x, timestep: 999, encoderHiddenStates: Tensor(repeating: 0.5, shape: [1, 2, contextWidth]))
        let diff = zip(out.scalars, x.scalars).map { Double($0 - $1) }
        return Float(diff.reduce(0, +) / Double(max(diff.count, 1)))
    }

    /// "v_prediction" when the statistic is below −1 (A1111's threshold), else "epsilon".
    public static func predictionType(unetFolder: URL) throws -> String {
        try statistic(unetFolder: unetFolder) < -1 ? "v_prediction" : "epsilon"
    }
}
