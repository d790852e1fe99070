#pragma once
// The work items every framework implements, with the names the table shows (bench/README.md).
// Sizes live here once so kiln and its peers measure exactly the same work.
#include <cstdint>
#include <string>
#include <vector>

namespace bench {

/// A batch-norm case: input [n, c, h, w] (h = w = 0: a dense [n, c] input), laid out NHWC or NCHW.
struct BnCase {
  std::int64_t n, c, h, w;
  bool nchw;
  bool rank2() const { return h == 0; }
  std::int64_t elements() const { return n * c * (rank2() ? 1 : h * w); }
  std::string name() const {
    std::string s = "bn " + std::to_string(n) + 'x' + std::to_string(c);
    if (rank2()) return s;
    return s + 'x' + std::to_string(h) + 'x' + std::to_string(w) + (nchw ? " nchw" : " nhwc");
  }
};

inline std::vector<BnCase> bn_cases() {
  return {{64, 32, 28, 28, false}, {64, 32, 28, 28, true}, {256, 64, 14, 14, false},
          {256, 64, 14, 14, true}, {256, 1024, 0, 0, false}};
}
/// kiln's composed path (fused = false) of a 4-D case; the peers' row is the case itself.
inline std::string composed_name(const BnCase& c) { return c.name() + " composed"; }

/// Batch-norm constants shared by every framework: TF's epsilon, TF momentum 0.9 = torch's 0.1.
inline constexpr double kBnEpsilon = 1e-3;
inline constexpr double kBnMomentum = 0.9;

/// The CNN step: [128, 28, 28, 1] images (or [128, 1, 28, 28]), conv 3x3x32 valid no bias -> BN ->
/// relu -> max-pool 2 -> conv 3x3x64 -> BN -> relu -> max-pool 2 -> flatten -> dense 10,
/// softmax cross-entropy, Adam 1e-3.
inline constexpr std::int64_t kCnnBatch = 128;
inline std::string cnn_name(bool nchw) { return nchw ? "cnn step nchw" : "cnn step nhwc"; }
/// Peak RSS of a fresh process after a few CNN steps in the framework's usual layout.
inline const char* const kCnnRssName = "cnn step peak RSS";

/// The MLP step: 784-100-100-100-10, each hidden layer dense (no bias) -> BN -> sigmoid, batch 60.
inline constexpr std::int64_t kMlpBatch = 60;
inline const std::vector<std::int64_t>& mlp_widths() {
  static const std::vector<std::int64_t> w{784, 100, 100, 100, 10};
  return w;
}
inline const char* const kMlpName = "mlp step";

/// Per-op overhead: a chain of 1,000 adds on 1-element tensors, time per add.
inline constexpr int kChainOps = 1000;
inline const char* const kOverheadName = "per-op overhead";

/// One Fashion-MNIST epoch of the main job's network (examples/fashion_mnist_lib.hpp), batch 64.
inline const char* const kFashionMnistName = "fashion-mnist epoch";
inline constexpr std::int64_t kFashionMnistBatch = 64;

/// STREAM triad a = b + s * c: the memory-bandwidth limit of the batch-norm rows.
inline const char* const kTriadName = "triad bandwidth";

}  // namespace bench
