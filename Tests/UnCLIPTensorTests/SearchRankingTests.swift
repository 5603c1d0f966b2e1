import XCTest
@testable import UnCLIPTensor

/// SearchRanking against its definition, worked by hand.
final class SearchRankingTests: XCTestCase {
    func testBothEmbeddingsAreWeightedUnitDirections() throws {
        // p̂ = (0.6, 0.8), d̂ = (1, 0); (p̂ + 0.5·d̂) / 1.5 = (1.1, 0.8) / 1.5.
        let v = try XCTUnwrap(SearchRanking.pictureAndDecoder.vector(picture: [3, 4], decoder: [10, 0]))
        XCTAssertEqual(v[0], 1.1 / 1.5, accuracy: 1e-7)
        XCTAssertEqual(v[1], 0.8 / 1.5, accuracy: 1e-7)
    }

    func testOneEmbeddingGivesItsUnitDirection() throws {
        XCTAssertEqual(try XCTUnwrap(SearchRanking.pictureAndDecoder.vector(picture: [3, 4], decoder: nil)), [0.6, 0.8])
        XCTAssertEqual(try XCTUnwrap(SearchRanking.pictureAndDecoder.vector(picture: nil, decoder: [0, -2])), [0, -1])
        // Different widths (different CLIP models): the picture's alone.
        XCTAssertEqual(try XCTUnwrap(SearchRanking.pictureAndDecoder.vector(picture: [3, 4], decoder: [1, 0, 0])), [0.6, 0.8])
        // A zero picture embedding falls back to the decoder's.
        XCTAssertEqual(try XCTUnwrap(SearchRanking.pictureAndDecoder.vector(picture: [0, 0], decoder: [0, 5])), [0, 1])
        XCTAssertNil(SearchRanking.pictureAndDecoder.vector(picture: nil, decoder: nil))
        XCTAssertNil(SearchRanking.pictureAndDecoder.vector(picture: [0, 0], decoder: []))
    }

    func testImageQueriesComparePicturesAlone() throws {
        XCTAssertEqual(try XCTUnwrap(SearchRanking.picture.vector(picture: [3, 4], decoder: [10, 0])), [0.6, 0.8])
        XCTAssertEqual(try XCTUnwrap(SearchRanking.picture.vector(picture: nil, decoder: [10, 0])), [1, 0])
    }

    func testLengthNeverExceedsOne() throws {
        let v = try XCTUnwrap(SearchRanking.pictureAndDecoder.vector(picture: [1, 2, 3], decoder: [1, 2, 3]))
        let length = v.reduce(0) { $0 + Double($1) * Double($1) }.squareRoot()
        XCTAssertEqual(length, 1, accuracy: 1e-6)  // equal directions: exactly unit
    }
}
