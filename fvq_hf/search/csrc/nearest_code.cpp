// Exact nearest-code search on the CPU, distances reduced where they are computed.
//
// The codebook is packed as (K/16, d, 16): 16 codes side by side per dimension, so one SIMD register holds
// one dimension of 16 codes. A micro-kernel takes 8 queries against 16 codes at a time: 8 accumulators start
// at ||c||^2 and gather (-2 q_j) * c_j over the dimensions, then a per-lane running minimum and its index
// are updated in registers. No distance is ever written to memory.
//
// Memory is bounded whatever N and K: the codes are packed a slab at a time (a few MiB), and the running
// minimum of each query is one (value, index) pair. Within a slab, every query block (a parallel task)
// passes over L2-sized chunks of codes. With few query blocks the slab is also split across tasks, each
// split keeping its own minima, merged at the end. Ties go to the lowest index everywhere (strict < in a
// lane and across slabs, lowest index among equal values), so the result is argmin's whatever the number
// of threads.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

namespace {

constexpr int kLanes = 16;
constexpr int kQueries = 8;  // queries per micro-kernel: 8 accumulators of 16 lanes
typedef float Floats __attribute__((vector_size(kLanes * sizeof(float))));
typedef int32_t Ints __attribute__((vector_size(kLanes * sizeof(int32_t))));

inline Floats load(const float* p) {
  Floats v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// Keep (value, index) if it beats (best, best_index): smaller, or equal with a lower index.
inline void keep_lower(float value, int32_t index, float& best, int32_t& best_index) {
  if (value < best || (value == best && index < best_index)) {
    best = value;
    best_index = index;
  }
}

// kQueries queries (rows of `queries`, already scaled by -2) against the packed code blocks [first, last);
// `offset` is the code index of block 0. `best` / `best_index` hold each query's running minimum.
void micro_kernel(const float* queries, int64_t dim, const float* packed, const float* norms, int64_t first,
                  int64_t last, int32_t offset, float* best, int32_t* best_index) {
  Ints lane;
  for (int l = 0; l < kLanes; ++l) lane[l] = l;
  Floats value[kQueries];
  Ints index[kQueries];
  for (int q = 0; q < kQueries; ++q) {
    for (int l = 0; l < kLanes; ++l) {
      value[q][l] = best[q];
      index[q][l] = best_index[q];
    }
  }
  for (int64_t block = first; block < last; ++block) {
    Floats distance[kQueries];
    const Floats norm = load(norms + block * kLanes);
    for (int q = 0; q < kQueries; ++q) distance[q] = norm;
    const float* codes = packed + block * dim * kLanes;
    for (int64_t j = 0; j < dim; ++j) {
      const Floats code = load(codes + j * kLanes);
      for (int q = 0; q < kQueries; ++q) distance[q] += queries[q * dim + j] * code;
    }
    const Ints code_index = lane + static_cast<int32_t>(offset + block * kLanes);
    for (int q = 0; q < kQueries; ++q) {
      const Ints closer = distance[q] < value[q];
      value[q] = closer ? distance[q] : value[q];
      index[q] = closer ? code_index : index[q];
    }
  }
  for (int q = 0; q < kQueries; ++q) {
    for (int l = 0; l < kLanes; ++l) keep_lower(value[q][l], index[q][l], best[q], best_index[q]);
  }
}

// Codes [start, start + blocks * 16) of the (K, d) codebook -> (blocks, d, 16) in `packed` and their squared
// norms in `norms`, +inf past K so that padding never wins.
void pack(const float* codebook, int64_t size, int64_t dim, int64_t start, int64_t blocks, float* packed,
          float* norms) {
  at::parallel_for(0, blocks, 16, [&](int64_t begin, int64_t end) {
    for (int64_t block = begin; block < end; ++block) {
      for (int l = 0; l < kLanes; ++l) {
        const int64_t k = start + block * kLanes + l;
        float sum = 0.f;
        for (int64_t j = 0; j < dim; ++j) {
          const float c = k < size ? codebook[k * dim + j] : 0.f;
          packed[(block * dim + j) * kLanes + l] = c;
          sum += c * c;
        }
        norms[block * kLanes + l] = k < size ? sum : std::numeric_limits<float>::infinity();
      }
    }
  });
}

}  // namespace

// (N, d) fp32 queries, (K, d) fp32 codes -> (N,) int64 index of the nearest code.
// `query_block`: queries per task; `chunk_bytes`: packed codes kept in L2 while a query block passes over them.
torch::Tensor nearest_code(torch::Tensor queries, torch::Tensor codebook, int64_t query_block, int64_t chunk_bytes) {
  TORCH_CHECK(queries.dim() == 2 && codebook.dim() == 2 && queries.size(1) == codebook.size(1),
              "expected (N, d) queries and a (K, d) codebook");
  TORCH_CHECK(queries.scalar_type() == torch::kFloat && codebook.scalar_type() == torch::kFloat, "expected fp32");
  TORCH_CHECK(queries.device().is_cpu() && codebook.device().is_cpu(), "expected CPU tensors");
  TORCH_CHECK(codebook.size(0) > 0 && codebook.size(0) < (int64_t{1} << 31) - kLanes, "K out of range");
  TORCH_CHECK(query_block > 0 && chunk_bytes > 0, "query_block and chunk_bytes must be positive");
  queries = queries.contiguous();
  codebook = codebook.contiguous();
  const int64_t n = queries.size(0), dim = queries.size(1), size = codebook.size(0);
  const int64_t block_bytes = dim * kLanes * int64_t(sizeof(float));
  const int64_t threads = at::get_num_threads();
  const int64_t blocks = (size + kLanes - 1) / kLanes;
  const int64_t chunk = std::max<int64_t>(1, chunk_bytes / block_bytes);
  // A slab is packed at a time: at least one chunk per thread, and a few MiB to keep the passes few.
  const int64_t slab = std::min(blocks, std::max(threads * chunk, (int64_t{4} << 20) / block_bytes));
  const int64_t query_blocks = (n + query_block - 1) / query_block;
  // Enough tasks to keep every thread busy when N is small: split each slab's codes too.
  const int64_t splits = std::clamp<int64_t>((4 * threads + query_blocks - 1) / std::max<int64_t>(query_blocks, 1), 1,
                                             std::max<int64_t>(1, slab / chunk));
  auto packed = torch::empty({slab, dim, kLanes}, codebook.options());
  auto norms = torch::empty({slab * kLanes}, codebook.options());
  auto split_value = torch::full({splits, n}, std::numeric_limits<float>::infinity(), queries.options());
  auto split_index = torch::zeros({splits, n}, queries.options().dtype(torch::kInt));
  const float* query = queries.data_ptr<float>();
  float* value = split_value.data_ptr<float>();
  int32_t* index = split_index.data_ptr<int32_t>();

  for (int64_t slab_start = 0; slab_start < blocks; slab_start += slab) {
    const int64_t slab_blocks = std::min(slab, blocks - slab_start);
    pack(codebook.data_ptr<float>(), size, dim, slab_start * kLanes, slab_blocks, packed.data_ptr<float>(),
         norms.data_ptr<float>());
    const float* codes = packed.data_ptr<float>();
    const float* norm = norms.data_ptr<float>();
    const int32_t offset = static_cast<int32_t>(slab_start * kLanes);
    at::parallel_for(0, query_blocks * splits, 1, [&](int64_t begin, int64_t end) {
      const int64_t padded = (query_block + kQueries - 1) / kQueries * kQueries;
      std::vector<float> scaled(padded * dim);
      std::vector<float> best(padded);
      std::vector<int32_t> best_index(padded);
      for (int64_t task = begin; task < end; ++task) {
        const int64_t row = (task / splits) * query_block, split = task % splits;
        const int64_t rows = std::min(query_block, n - row), rows_padded = (rows + kQueries - 1) / kQueries * kQueries;
        const int64_t first = slab_blocks * split / splits, last = slab_blocks * (split + 1) / splits;
        for (int64_t i = 0; i < rows * dim; ++i) scaled[i] = -2.f * query[row * dim + i];
        std::fill(scaled.begin() + rows * dim, scaled.begin() + rows_padded * dim, 0.f);
        std::copy_n(value + split * n + row, rows, best.begin());
        std::copy_n(index + split * n + row, rows, best_index.begin());
        for (int64_t start = first; start < last; start += chunk) {
          const int64_t stop = std::min(start + chunk, last);
          for (int64_t r = 0; r < rows_padded; r += kQueries)
            micro_kernel(scaled.data() + r * dim, dim, codes, norm, start, stop, offset, best.data() + r,
                         best_index.data() + r);
        }
        std::copy_n(best.begin(), rows, value + split * n + row);
        std::copy_n(best_index.begin(), rows, index + split * n + row);
      }
    });
  }

  auto result = torch::empty({n}, queries.options().dtype(torch::kLong));
  int64_t* out = result.data_ptr<int64_t>();
  for (int64_t r = 0; r < n; ++r) {
    float best = value[r];
    int32_t best_index = index[r];
    for (int64_t split = 1; split < splits; ++split) keep_lower(value[split * n + r], index[split * n + r], best, best_index);
    out[r] = best_index;
  }
  return result;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("nearest_code", &nearest_code, "Exact nearest-code search, (N, d), (K, d) fp32 -> (N,) int64",
        pybind11::arg("queries"), pybind11::arg("codebook"), pybind11::arg("query_block"),
        pybind11::arg("chunk_bytes"));
}
