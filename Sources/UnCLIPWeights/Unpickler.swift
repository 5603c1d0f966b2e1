import Foundation

/// A value of a torch checkpoint's pickle, as far as a state dict needs one. Nothing here can run code: a global
/// is only ever a name, and the few that build values (tensors, ordered dicts) are interpreted by `Unpickler`.
public indirect enum PickleValue: Sendable {
    case none
    case bool(Bool)
    case int(Int)
    case float(Double)
    case string(String)
    case bytes([UInt8])
    case tuple([PickleValue])
    case list(PickleList)
    case dict(PickleDict)
    /// A global allowed by name, not yet applied (e.g. `torch.FloatStorage` inside a storage reference).
    case global(String)
    /// A storage named by a persistent id: ('storage', type, key, location, element count).
    case storage(PickleStorage)
    case tensor(PickleTensor)
    /// An object of an allowed class that a state dict does not need (a Lightning callback, a numpy scalar):
    /// kept as its class name only; its state is dropped unread.
    case opaque(String)

    public var dict: PickleDict? { if case let .dict(d) = self { return d }; return nil }
}

/// Lists and dicts are references, as in Python: APPENDS / SETITEMS may fill one after it was memoized. Once one
/// has been taken off the stack (into a tuple, another container, a call) it is sealed: changing it then is refused,
/// so no container can come to hold itself or grow deeper than its parent was told (a chain of lists, each filled
/// after it was placed in the previous one, would otherwise nest without limit and overflow the stack when freed).
public final class PickleList: @unchecked Sendable {
    public internal(set) var items: [PickleValue] = []
    var depth = 1
    var sealed = false
}

public final class PickleDict: @unchecked Sendable {
    var depth = 1
    var sealed = false
    /// Entries in pickle order (a state dict's order); a repeated key keeps its last value, as in Python.
    public private(set) var entries: [(key: PickleValue, value: PickleValue)] = []
    private var stringIndex: [String: Int] = [:]

    func set(_ key: PickleValue, _ value: PickleValue) {
        if case let .string(s) = key {
            if let i = stringIndex[s] { entries[i].value = value; return }
            stringIndex[s] = entries.count
        }
        entries.append((key, value))
    }

    public subscript(key: String) -> PickleValue? { stringIndex[key].map { entries[$0].value } }
}

public struct PickleStorage: Sendable, Equatable {
    public let key: String
    public let dtype: SafeTensorsDType
    public let count: Int
}

/// A tensor as `torch._utils._rebuild_tensor_v2` would build it: a strided view of a storage.
public struct PickleTensor: Sendable, Equatable {
    public let storage: PickleStorage
    public let offset: Int
    public let shape: [Int]
    public let strides: [Int]
    public var count: Int { shape.reduce(1, *) }
    public var isContiguous: Bool {
        var expected = 1
        for (size, stride) in zip(shape, strides).reversed() where size != 1 {
            if stride != expected { return false }
            expected *= size
        }
        return true
    }
}

/// A pickle reader written for torch state dicts, interpreting rather than executing: only the opcodes
/// `torch.save` emits (protocol 2, plus the protocol 4 framing ops) and only the globals a checkpoint of
/// tensors needs are accepted. Anything else (`posix.system`, `builtins.eval`, an unknown class) is refused
/// by name when its GLOBAL is read, before anything could use it. Sizes, memo, stack and nesting are bounded
/// so a hostile file costs at most time linear in its length.
public struct Unpickler {
    public struct Limits: Sendable {
        public var maxStack = 1_000_000
        public var maxMemo = 1_000_000
        public var maxNesting = 256
        public var maxStringBytes = 16 << 20
        public var maxTensors = 1_000_000
        public init() {}
    }

    /// Globals whose application builds a value here (interpreted, never imported).
    static let storageTypes: [String: SafeTensorsDType] = [
        "torch.FloatStorage": .F32, "torch.HalfStorage": .F16, "torch.BFloat16Storage": .BF16, "torch.DoubleStorage": .F64,
        "torch.LongStorage": .I64, "torch.IntStorage": .I32, "torch.ShortStorage": .I16, "torch.CharStorage": .I8,
        "torch.ByteStorage": .U8, "torch.BoolStorage": .BOOL,
    ]
    static let builders: Set<String> = [
        "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state",
        "collections.OrderedDict", "torch.Size", "_codecs.encode",
    ]
    /// Classes real checkpoints carry outside the state dict (Lightning's callback state, numpy scalars for
    /// metrics): accepted as opaque values so the state dict beside them still loads.
    static let opaqueGlobals: Set<String> = [
        "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint",
        "lightning.pytorch.callbacks.model_checkpoint.ModelCheckpoint",
        "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar", "numpy.dtype",
    ]

    /// Python 2 module names protocol 2 writes for Python 3 ones (the common part of `_compat_pickle`), for messages.
    static let python3Modules = ["__builtin__": "builtins", "copy_reg": "copyreg", "commands": "subprocess", "cPickle": "pickle",
                                 "exceptions": "builtins", "UserDict": "collections", "urllib2": "urllib.request"]

    let path: String
    let limits: Limits
    public private(set) var tensorCount = 0

    public init(path: String, limits: Limits = Limits()) { self.path = path; self.limits = limits }

    private func refuse(_ reason: String) -> WeightError { .refusedPickle(path: path, reason: reason) }
    private func bad(_ at: Int, _ reason: String) -> WeightError { .badCheckpoint(path: path, reason: "pickle byte \(at): \(reason)") }

    /// Reads one pickle (up to STOP) from `bytes`.
    public mutating func load(_ bytes: UnsafeRawBufferPointer) throws -> PickleValue {
        var stack: [PickleValue] = []
        var depths: [Int] = []  // nesting depth of each stack value, so no value grows deeper than the limit
        var marks: [Int] = []
        var memo: [Int: (PickleValue, Int)] = [:]
        var at = 0
        let n = bytes.count

        func take(_ count: Int, _ what: String) throws -> UnsafeRawBufferPointer {
            guard count >= 0, count <= n - at else { throw bad(at, "\(what) needs \(count) bytes but the pickle ends after \(n - at)") }
            defer { at += count }
            return UnsafeRawBufferPointer(rebasing: bytes[at..<(at + count)])
        }
        func uint(_ size: Int, _ what: String) throws -> Int {
            let b = try take(size, what)
            var v = 0
            for i in (0..<size).reversed() { v = v << 8 | Int(b[i]) }
            return v
        }
        func push(_ v: PickleValue, depth: Int = 0) throws {
            guard stack.count < limits.maxStack else { throw refuse("the pickle stack grows past \(limits.maxStack) values") }
            guard depth <= limits.maxNesting else { throw refuse("values nest deeper than \(limits.maxNesting) levels") }
            stack.append(v); depths.append(depth)
        }
        func pop(_ op: String) throws -> (PickleValue, Int) {
            guard let v = stack.popLast(), let d = depths.popLast(), stack.count >= (marks.last ?? 0) else {
                throw bad(at, "\(op) on an empty stack")
            }
            return (v, seal(v) ?? d)
        }
        func popToMark(_ op: String) throws -> ([PickleValue], Int) {
            guard let m = marks.popLast(), m <= stack.count else { throw bad(at, "\(op) without a MARK") }
            let items = Array(stack[m...])
            let depth = zip(items, depths[m...]).map { seal($0) ?? $1 }.max() ?? 0
            stack.removeSubrange(m...); depths.removeSubrange(m...)
            return (items, depth)
        }
        func liveDepth(_ v: PickleValue) -> Int? {
            switch v {
            case let .list(l): return l.depth
            case let .dict(d): return d.depth
            default: return nil
            }
        }
        /// Seals a container leaving the stack; its depth as it now stands (nil: not a container).
        func seal(_ v: PickleValue) -> Int? {
            switch v {
            case let .list(l): l.sealed = true; return l.depth
            case let .dict(d): d.sealed = true; return d.depth
            default: return nil
            }
        }
        /// Records that the container on top of the stack now holds something `childDepth` deep.
        func grow(_ childDepth: Int, at opAt: Int) throws {
            let depth: Int
            switch stack.last {
            case let .list(l)?:
                guard !l.sealed else { throw refuse("a list changed after it was used (at byte \(opAt)): shared or recursive structures are not state dicts") }
                l.depth = max(l.depth, childDepth + 1); depth = l.depth
            case let .dict(d)?:
                guard !d.sealed else { throw refuse("a dict changed after it was used (at byte \(opAt)): shared or recursive structures are not state dicts") }
                d.depth = max(d.depth, childDepth + 1); depth = d.depth
            default:
                throw bad(opAt, "APPEND or SETITEMS on something that is neither a list nor a dict")
            }
            depths[depths.count - 1] = depth
            if depth > limits.maxNesting { throw refuse("values nest deeper than \(limits.maxNesting) levels") }
        }
        func string(_ count: Int, _ what: String) throws -> String {
            guard count <= limits.maxStringBytes else { throw refuse("a \(what) of \(count) bytes (at most \(limits.maxStringBytes) are read)") }
            guard let s = copiedUTF8(try take(count, what)) else { throw bad(at, "\(what) is not UTF-8") }
            return s
        }
        func rawBytes(_ count: Int, _ what: String) throws -> [UInt8] {
            guard count <= limits.maxStringBytes else { throw refuse("\(what) of \(count) bytes (at most \(limits.maxStringBytes) are read)") }
            return Array(try take(count, what))
        }
        func memoize(_ index: Int) throws {
            guard let top = stack.last else { throw bad(at, "memo store on an empty stack") }
            guard memo[index] != nil || memo.count < limits.maxMemo else { throw refuse("the memo grows past \(limits.maxMemo) entries") }
            memo[index] = (top, depths.last!)
        }
        func recall(_ index: Int) throws {
            guard let (v, d) = memo[index] else { throw bad(at, "memo entry \(index) read before it was stored") }
            try push(v, depth: liveDepth(v) ?? d)
        }

        func line() throws -> String {
            guard let end = bytes[at...].firstIndex(of: 0x0A), end - at <= 256 else { throw bad(at, "GLOBAL name without a newline within 256 bytes") }
            defer { at = end + 1 }
            guard let s = copiedUTF8(UnsafeRawBufferPointer(rebasing: bytes[at..<end])) else { throw bad(at, "GLOBAL name is not UTF-8") }
            return s
        }
        func setItems(_ items: [PickleValue], depth: Int, at opAt: Int) throws {
            guard case let .dict(dict)? = stack.last else { throw bad(opAt, "SETITEMS on something that is not a dict") }
            try grow(depth, at: opAt)
            for i in stride(from: 0, to: items.count, by: 2) { dict.set(items[i], items[i + 1]) }
        }

        while true {
            let opAt = at
            let op = try take(1, "opcode")[0]
            switch op {
            case 0x80: _ = try take(1, "PROTO")  // PROTO n: any version; unknown opcodes are refused below
            case 0x95: _ = try take(8, "FRAME")  // FRAME (protocol 4): a length hint only
            case 0x2E: // STOP
                guard stack.count == 1, marks.isEmpty else { throw bad(opAt, "STOP with \(stack.count) values on the stack") }
                return stack[0]
            case 0x28: // MARK
                guard marks.count < limits.maxStack else { throw refuse("more than \(limits.maxStack) open MARKs") }
                marks.append(stack.count)
            case 0x7D: try push(.dict(PickleDict()), depth: 1)  // EMPTY_DICT
            case 0x5D: try push(.list(PickleList()), depth: 1)  // EMPTY_LIST
            case 0x29: try push(.tuple([]), depth: 1)  // EMPTY_TUPLE
            case 0x4E: try push(.none)  // NONE
            case 0x88: try push(.bool(true))  // NEWTRUE
            case 0x89: try push(.bool(false))  // NEWFALSE
            case 0x4B: try push(.int(try uint(1, "BININT1")))
            case 0x4D: try push(.int(try uint(2, "BININT2")))
            case 0x4A: try push(.int(Int(Int32(truncatingIfNeeded: try uint(4, "BININT")))))
            case 0x8A: // LONG1: little-endian two's complement of up to 8 bytes here
                let count = try uint(1, "LONG1")
                guard count <= 8 else { throw refuse("an integer of \(count) bytes (at most 8 are read)") }
                let b = try take(count, "LONG1")
                var v: UInt64 = 0
                for i in (0..<count).reversed() { v = v << 8 | UInt64(b[i]) }
                if count > 0, count < 8, b[count - 1] & 0x80 != 0 { v |= ~0 << (UInt64(count) * 8) }
                try push(.int(Int(Int64(bitPattern: v))))
            case 0x47: // BINFLOAT: big-endian double
                let b = try take(8, "BINFLOAT")
                var bits: UInt64 = 0
                for i in 0..<8 { bits = bits << 8 | UInt64(b[i]) }
                try push(.float(Double(bitPattern: bits)))
            case 0x58: try push(.string(try string(try uint(4, "BINUNICODE"), "BINUNICODE string")))
            case 0x8C: try push(.string(try string(try uint(1, "SHORT_BINUNICODE"), "SHORT_BINUNICODE string")))
            case 0x8D:
                let count = try uint(8, "BINUNICODE8")
                try push(.string(try string(count, "BINUNICODE8 string")))
            case 0x43: try push(.bytes(try rawBytes(try uint(1, "SHORT_BINBYTES"), "SHORT_BINBYTES")))
            case 0x42: try push(.bytes(try rawBytes(try uint(4, "BINBYTES"), "BINBYTES")))
            case 0x55: try push(.bytes(try rawBytes(try uint(1, "SHORT_BINSTRING"), "SHORT_BINSTRING")))
            case 0x54: try push(.bytes(try rawBytes(try uint(4, "BINSTRING"), "BINSTRING")))
            case 0x71: try memoize(try uint(1, "BINPUT"))
            case 0x72: try memoize(try uint(4, "LONG_BINPUT"))
            case 0x94: try memoize(memo.count)  // MEMOIZE
            case 0x68: try recall(try uint(1, "BINGET"))
            case 0x6A: try recall(try uint(4, "LONG_BINGET"))
            case 0x30: _ = try pop("POP")
            case 0x31: _ = try popToMark("POP_MARK")
            case 0x32: // DUP
                guard let top = stack.last else { throw bad(opAt, "DUP on an empty stack") }
                try push(top, depth: liveDepth(top) ?? depths.last!)
            case 0x74: // TUPLE
                let (items, d) = try popToMark("TUPLE")
                try push(.tuple(items), depth: d + 1)
            case 0x85, 0x86, 0x87: // TUPLE1, TUPLE2, TUPLE3
                var items: [PickleValue] = [], d = 0
                for _ in 0..<Int(op - 0x84) { let (v, vd) = try pop("TUPLE\(op - 0x84)"); items.insert(v, at: 0); d = max(d, vd) }
                try push(.tuple(items), depth: d + 1)
            case 0x61: // APPEND
                let (v, d) = try pop("APPEND")
                guard case let .list(list)? = stack.last else { throw bad(opAt, "APPEND to something that is not a list") }
                try grow(d, at: opAt)
                list.items.append(v)
            case 0x65: // APPENDS
                let (items, d) = try popToMark("APPENDS")
                guard case let .list(list)? = stack.last else { throw bad(opAt, "APPENDS to something that is not a list") }
                try grow(d, at: opAt)
                list.items.append(contentsOf: items)
            case 0x73: // SETITEM
                let (v, vd) = try pop("SETITEM"), (k, kd) = try pop("SETITEM")
                try setItems([k, v], depth: max(vd, kd), at: opAt)
            case 0x75: // SETITEMS
                let (items, d) = try popToMark("SETITEMS")
                guard items.count % 2 == 0 else { throw bad(opAt, "SETITEMS with an odd number of values") }
                try setItems(items, depth: d, at: opAt)
            case 0x63: // GLOBAL "module\nname\n"
                try push(try global(try line(), try line()))
            case 0x93: // STACK_GLOBAL (protocol 4)
                let (name, _) = try pop("STACK_GLOBAL"), (module, _) = try pop("STACK_GLOBAL")
                guard case let .string(m) = module, case let .string(q) = name else { throw bad(opAt, "STACK_GLOBAL needs two strings") }
                try push(try global(m, q))
            case 0x51: // BINPERSID: torch's storage references
                let (pid, _) = try pop("BINPERSID")
                try push(.storage(try storage(pid, at: opAt)))
            case 0x52: // REDUCE: callable(*args), for the allowed builders only
                let (args, ad) = try pop("REDUCE"), (callable, _) = try pop("REDUCE")
                let (v, d) = try reduce(callable, args, depth: ad, at: opAt)
                try push(v, depth: d)
            case 0x81: // NEWOBJ: cls.__new__(cls, *args): only opaque classes
                let (_, _) = try pop("NEWOBJ"), (cls, _) = try pop("NEWOBJ")
                guard case let .global(name) = cls, Unpickler.opaqueGlobals.contains(name) else {
                    throw refuse("NEWOBJ of \(describe(cls)), which is not a class a state dict holds")
                }
                try push(.opaque(name))
            case 0x62: // BUILD: state for the object below. Ordered dicts carry `_metadata`, objects their fields: dropped.
                _ = try pop("BUILD")
                guard let target = stack.last else { throw bad(opAt, "BUILD on an empty stack") }
                switch target {
                case .dict, .opaque, .tensor: break
                default: throw refuse("BUILD on \(describe(target))")
                }
            default:
                throw refuse(String(format: "pickle opcode 0x%02X ('%@') at byte %d, which torch.save does not write for a state dict",
                                    op, String(UnicodeScalar(op)), opAt))
            }
        }

    }

    /// A global's name, if it is one a state dict may hold; the refusal names it otherwise.
    private func global(_ module: String, _ name: String) throws -> PickleValue {
        let full = "\(module).\(name)"
        guard Unpickler.storageTypes[full] != nil || Unpickler.builders.contains(full) || Unpickler.opaqueGlobals.contains(full) else {
            // Protocol 2 writes Python 3 names in their Python 2 spelling (`fix_imports`); name both.
            let py3 = Unpickler.python3Modules[module].map { "\($0).\(name)" }
            throw refuse("the pickle names the global \(py3.map { "\($0) (written \(full))" } ?? full), which is not one a tensor state dict needs")
        }
        return .global(full)
    }

    private func storage(_ pid: PickleValue, at: Int) throws -> PickleStorage {
        guard case let .tuple(t) = pid, t.count == 5, case .string("storage") = t[0], case let .global(type) = t[1],
              case let .string(key) = t[2], case let .int(count) = t[4], count >= 0 else {
            throw bad(at, "persistent id \(describe(pid)) is not ('storage', type, key, location, count)")
        }
        guard let dtype = Unpickler.storageTypes[type] else { throw refuse("a storage of type \(type)") }
        guard !key.isEmpty, key.count <= 64, !key.contains("/"), !key.contains("..") else { throw bad(at, "storage key '\(key)' is not a plain name") }
        return PickleStorage(key: key, dtype: dtype, count: count)
    }

    private mutating func reduce(_ callable: PickleValue, _ args: PickleValue, depth: Int, at: Int) throws -> (PickleValue, Int) {
        guard case let .global(name) = callable else { throw refuse("REDUCE calls \(describe(callable)), which is not an allowed global") }
        guard case let .tuple(a) = args else { throw bad(at, "REDUCE arguments of \(name) are not a tuple") }
        switch name {
        case "collections.OrderedDict":
            guard a.isEmpty else { throw refuse("collections.OrderedDict with arguments") }
            return (.dict(PickleDict()), 1)
        case "torch.Size":
            guard a.count == 1, case let .tuple(sizes) = a[0] else { throw bad(at, "torch.Size needs one tuple") }
            return (.tuple(sizes), depth)
        case "_codecs.encode":
            // Protocol 2 writes Python 3 bytes as encode(text, 'latin1'): the code points are the bytes.
            guard a.count == 2, case let .string(text) = a[0], case .string("latin1") = a[1] else { throw refuse("_codecs.encode other than (text, 'latin1')") }
            let scalars = text.unicodeScalars.map(\.value)
            guard scalars.allSatisfy({ $0 < 256 }) else { throw bad(at, "latin1 text with a code point above 255") }
            return (.bytes(scalars.map { UInt8($0) }), 0)
        case "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state":
            guard a.count >= 3, case .tensor = a[0] else { throw bad(at, "\(name) without a tensor") }
            return (a[0], 0)
        case "torch._utils._rebuild_tensor_v2":
            return (.tensor(try rebuildTensor(a, at: at)), 0)
        default:
            if Unpickler.opaqueGlobals.contains(name) { return (.opaque(name), 0) }
            throw refuse("REDUCE calls \(name), which builds nothing a state dict holds")
        }
    }

    /// `_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])`,
    /// checked: every element it addresses lies inside the storage's declared count.
    private mutating func rebuildTensor(_ a: [PickleValue], at: Int) throws -> PickleTensor {
        guard a.count >= 4, case let .storage(storage) = a[0], case let .int(offset) = a[1],
              case let .tuple(sizeValues) = a[2], case let .tuple(strideValues) = a[3] else {
            throw bad(at, "_rebuild_tensor_v2 arguments are not (storage, offset, size, stride, …)")
        }
        let shape = try sizeValues.map { v -> Int in guard case let .int(i) = v, i >= 0 else { throw bad(at, "tensor size \(describe(v))") }; return i }
        let strides = try strideValues.map { v -> Int in guard case let .int(i) = v, i >= 0 else { throw bad(at, "tensor stride \(describe(v))") }; return i }
        guard shape.count == strides.count, shape.count <= 16 else { throw bad(at, "tensor of \(shape.count) sizes and \(strides.count) strides") }
        guard offset >= 0 else { throw bad(at, "negative storage offset \(offset)") }
        var count = 1, last = offset
        for (size, stride) in zip(shape, strides) {
            let (c, o1) = count.multipliedReportingOverflow(by: size)
            let (span, o2) = max(size - 1, 0).multipliedReportingOverflow(by: stride)
            let (l, o3) = last.addingReportingOverflow(span)
            guard !o1, !o2, !o3 else { throw refuse("a tensor of size \(shape), stride \(strides): the sizes overflow") }
            count = c; last = l
        }
        if count > 0, last >= storage.count {
            throw bad(at, "tensor of size \(shape), stride \(strides) at offset \(offset) reaches element \(last) of storage '\(storage.key)', which has \(storage.count)")
        }
        tensorCount += 1
        guard tensorCount <= limits.maxTensors else { throw refuse("more than \(limits.maxTensors) tensors") }
        return PickleTensor(storage: storage, offset: offset, shape: shape, strides: strides)
    }

    private func describe(_ v: PickleValue) -> String {
        switch v {
        case let .global(name): return name
        case let .opaque(name): return "an object of \(name)"
        case let .string(s): return "'\(s.prefix(40))'"
        case let .int(i): return "\(i)"
        case .tuple: return "a tuple"
        case .list: return "a list"
        case .dict: return "a dict"
        case .tensor: return "a tensor"
        case .storage: return "a storage"
        case .none: return "None"
        case .bool, .float, .bytes: return "a scalar"
        }
    }
}
