// Linear algebra: MatMul (rank 2, float types) through kernels::gemm (CBLAS).
#include "framework/kernels/gemm.hpp"
#include "framework/ops/common.hpp"


namespace kiln {

Tensor matmul(const Tensor& a, const Tensor& b, MatMulOptions options, const std::string& name) {
  return detail::build1("MatMul", {a, b}, options, name);
}

void register_linalg_ops(OpRegistry& r) {
  r.add(
      {.type = "MatMul",
       .shape_fn =
           [](const InferenceContext& c) {
             detail::expect_inputs(c, 2);
             detail::expect_same_dtype(c);
             const auto& o = c.attrs<MatMulOptions>();
             Shape s[2];
             for (int i = 0; i < 2; ++i) {
               s[i] = c.shapes[static_cast<std::size_t>(i)];
               if (s[i].has_rank() && s[i].rank() != 2)
                 throw ValueError("Shape must be rank 2 but is rank " +
                                  std::to_string(s[i].rank()));
               if (!s[i].has_rank()) s[i] = Shape::unknown_of_rank(2);
             }
             const std::int64_t ka = s[0][o.transpose_a ? 0 : 1], kb = s[1][o.transpose_b ? 1 : 0];
             if (ka >= 0 && kb >= 0 && ka != kb)
               throw ValueError("Dimensions must be equal, but are " + std::to_string(ka) +
                                " and " + std::to_string(kb));
             return detail::one(c.dtypes[0],
                                Shape{s[0][o.transpose_a ? 1 : 0], s[1][o.transpose_b ? 0 : 1]});
           },
       // Row-major C[m,n] = op(A)[m,k] op(B)[k,n]; the leading dimension of each stored matrix is
       // its number of columns.
       .kernels = kernels_with<MatMulOptions, KILN_FLOAT_TYPES>([]<class T>(KernelContext& c, const MatMulOptions& o) {
         const auto& a = c.input_as<T>(0);
         const auto& b = c.input_as<T>(1);
         if (a.dimension() != 2 || b.dimension() != 2)
           throw InvalidArgumentError(
               "'" + c.op_name() + "' (op: 'MatMul'): inputs must be matrices, got " +
               c.input(0).shape().to_string() + " and " + c.input(1).shape().to_string());
         const auto m = static_cast<std::int64_t>(a.shape(o.transpose_a ? 1 : 0)),
                    k = static_cast<std::int64_t>(a.shape(o.transpose_a ? 0 : 1));
         const auto kb = static_cast<std::int64_t>(b.shape(o.transpose_b ? 1 : 0)),
                    n = static_cast<std::int64_t>(b.shape(o.transpose_b ? 0 : 1));
         if (k != kb)
           throw InvalidArgumentError(
               "'" + c.op_name() + "' (op: 'MatMul'): Matrix size-incompatible: In[0]: " +
               c.input(0).shape().to_string() + ", In[1]: " + c.input(1).shape().to_string());
         auto y =
             c.allocate_output<T>(0, {static_cast<std::size_t>(m), static_cast<std::size_t>(n)});
         const auto lda = static_cast<std::int64_t>(a.shape(1)),
                    ldb = static_cast<std::int64_t>(b.shape(1));
         kernels::gemm(o.transpose_a, o.transpose_b, m, n, k, T(1), a.data(),
                       std::max<std::int64_t>(1, lda), b.data(), std::max<std::int64_t>(1, ldb),
                       T(0), y.data(), std::max<std::int64_t>(1, n));
       }),
       // C = A B: dA = dC B^T, dB = A^T dC; the transposed cases follow by transposing these (TF).
       .gradient =
           [](const Operation& op, const OptionalTensors& dy) {
             const Tensor a = op.inputs()[0], b = op.inputs()[1], g = *dy[0];
             const auto& o = op.attrs<MatMulOptions>();
             if (!o.transpose_a && !o.transpose_b)
               return OptionalTensors{matmul(g, b, {.transpose_b = true}),
                                      matmul(a, g, {.transpose_a = true})};
             if (!o.transpose_a)
               return OptionalTensors{matmul(g, b), matmul(g, a, {.transpose_a = true})};
             if (!o.transpose_b)
               return OptionalTensors{matmul(b, g, {.transpose_b = true}), matmul(a, g)};
             return OptionalTensors{matmul(b, g, {.transpose_a = true, .transpose_b = true}),
                                    matmul(g, a, {.transpose_a = true, .transpose_b = true})};
           },
       .attr_codec = attr_codec<MatMulOptions>([](auto& io, auto& a) {
         io(a.transpose_a);
         io(a.transpose_b);
       })});
}

}  // namespace kiln
