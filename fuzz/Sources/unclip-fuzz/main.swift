import CFuzzDriver
import Foundation
import UnCLIPFuzz

// usage: unclip-fuzz TARGET [libFuzzer options and corpus folders]
// The target is the first argument; the rest go to libFuzzer unchanged (fuzz/run.sh passes them).
let arguments = CommandLine.arguments
guard arguments.count >= 2, let chosen = FuzzTargets.named(arguments[1]) else {
    let names = FuzzTargets.all.map(\.name).joined(separator: ", ")
    FileHandle.standardError.write(Data("usage: unclip-fuzz TARGET [libFuzzer options] [corpus folders]\ntargets: \(names)\n".utf8))
    exit(2)
}

// libFuzzer's callback is a C function pointer and cannot capture: the chosen target is a constant it reads.
let target = chosen
let callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32 = { bytes, count in
    target.run(bytes.map { Data(bytes: $0, count: count) } ?? Data())
    return 0
}

// One warm-up run before libFuzzer starts: one-time state (the tokenizer a target loads once, Swift's metadata
// caches) is allocated here, so libFuzzer's leak check does not count it against the first input.
target.run(Data())

// libFuzzer sees argv without the target name.
var argc = CommandLine.argc - 1
var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
argv![1] = argv![0]
argv = argv! + 1
exit(LLVMFuzzerRunDriver(&argc, &argv, callback))
