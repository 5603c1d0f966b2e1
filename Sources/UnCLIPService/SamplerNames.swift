import Foundation

/// AUTOMATIC1111's display names for our schedulers (what its PNG Info and API clients expect).
enum SamplerNames {
    static func a1111(_ name: String?) -> String {
        guard let name else { return "?" }
        let table: [String: String] = [
            "ddim": "DDIM", "DDIMScheduler": "DDIM", "pndm": "PLMS", "PNDMScheduler": "PLMS", "ddpm": "DDPM", "DDPMScheduler": "DDPM",
            "euler": "Euler", "EulerDiscreteScheduler": "Euler", "euler-karras": "Euler Karras", "euler-a": "Euler a",
            "EulerAncestralDiscreteScheduler": "Euler a", "dpm++2m": "DPM++ 2M", "DPMSolverMultistepScheduler": "DPM++ 2M",
            "dpm++2m-karras": "DPM++ 2M Karras", "lms": "LMS", "LMSDiscreteScheduler": "LMS", "lms-karras": "LMS Karras",
        ]
        return table[name] ?? table[name.lowercased()] ?? name
    }
}
