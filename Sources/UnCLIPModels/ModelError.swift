/// Invalid inputs to a model call (as opposed to invalid weights, which are `WeightError`s).
public enum ModelError: Error, CustomStringConvertible, Equatable {
    case invalidInput(String)

    public var description: String {
        switch self { case let .invalidInput(s): return s }
    }
}
