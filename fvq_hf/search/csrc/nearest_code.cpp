// Exact nearest-code search on the CPU, distances reduced where they are computed.
//
// This file is compiled once per instruction set (`kernel.py`): FVQ_LANES is the vector width in floats that
// the target's registers hold (16 for x86-64-v4 / AVX-512, 8 for x86-64-v3 / AVX2, 4 for the portable build:
// SSE2 on x86-64, NEON on ARM), and the register blocking below is sized for that target's register file.
//
// The codebook is packed as (K/W, d, W): W codes side by side per dimension, so one vector holds one dimension
// of W codes. Two micro-kernels, both exact:
// - "register": Q queries against one vector of codes at a time; the running minimum of each (query, lane)
//   and its index stay in registers across the code blocks (3 Q + 3 vectors). Best for small d, where the
//   minimum is updated after every d multiply-adds.
// - "tile": Q queries against R vectors of codes (a GEMM-style Q x R tile of accumulators, Q broadcasts and R
//   code loads per dimension); the running minimum is kept in L1 and updated once per tile. Best for large d.
// No distance is ever written to memory.
//
// Memory is bounded whatever N and K: the codes are packed a slab at a time (a few MiB), and the running
// minimum of each query is one (value, index) pair. Within a slab, every query block (a parallel task)
// passes over L2-sized chunks of codes. With few query blocks the slab is also split across tasks, each
// split keeping its own minima, merged at the end. Ties go to the lowest index everywhere (strict < within a
// lane, lowest index among equal values across lanes, tiles and slabs), so the result is argmin's whatever
// the number of threads.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#ifndef FVQ_LANES
#define FVQ_LANES 4
#endif
#ifndef FVQ_ISA
#define FVQ_ISA portable
#endif
#define FVQ_STRING(x) FVQ_STRING_(x)
#define FVQ_STRING_(x) #x

namespace {

constexpr int kLanes = FVQ_LANES;
// Register blocking per register file: 32 vector registers with AVX-512 (and NEON), 16 with AVX2 and SSE.
// Measured on a 2-core Xeon (AVX-512) at d = 8-256 (benchmarks/RESULTS.md, issue 22): the tile beats the register
// shape from d = 16 with AVX-512 (0.91x at d = 8, 1.03x at 16), and at every d with AVX2 and the portable build.
#if FVQ_LANES == 16
constexpr int kRegisterQueries = 8;  // 8 accumulators + 8 minima + 8 indices + code, lane ids, norms = 27
constexpr int kTileQueries = 10, kTileCodes = 2;  // 20 accumulators + 2 code vectors (the best of a sweep)
constexpr int kTileFromDim = 16;
#else
constexpr int kRegisterQueries = 4;  // 4 + 4 + 4 + 3 = 15
constexpr int kTileQueries = 6, kTileCodes = 2;  // 12 accumulators + 2 code vectors + 1 broadcast = 15
constexpr int kTileFromDim = 1;
#endif

typedef float Floats __attribute__((vector_size(kLanes * sizeof(float))));
typedef int32_t Ints __attribute__((vector_size(kLanes * sizeof(int32_t))));

inline Floats load(const float* p) {
  Floats v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

inline Ints load_ints(const int32_t* p) {
  Ints v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

inline void store(float* p, Floats v) { std::memcpy(p, &v, sizeof(v)); }
inline void store_ints(int32_t* p, Ints v) { std::memcpy(p, &v, sizeof(v)); }

inline Ints lane_ids() {
  Ints lane;
  for (int l = 0; l < kLanes; ++l) lane[l] = l;
  return lane;
}

// Keep (value, index) if it beats (best, best_index): smaller, or equal with a lower index.
inline void keep_lower(float value, int32_t index, float& best, int32_t& best_index) {
  if (value < best || (value == best && index < best_index)) {
    best = value;
    best_index = index;
  }
}

// The running minimum of Q queries, per lane: `value` / `index` are (Q, W), in L1. Folded into one
// (value, index) per query at the end of a task.
struct LaneMinima {
  std::vector<float> value;
  std::vector<int32_t> index;
  void reset(int64_t rows) {
    value.assign(rows * kLanes, std::numeric_limits<float>::infinity());
    index.assign(rows * kLanes, 0);
  }
  void fold(int64_t rows, float* best, int32_t* best_index) const {
    for (int64_t q = 0; q < rows; ++q)
      for (int l = 0; l < kLanes; ++l) keep_lower(value[q * kLanes + l], index[q * kLanes + l], best[q], best_index[q]);
  }
};

// "register": kRegisterQueries queries (rows of `queries`, scaled by -2) against code blocks [first, last);
// `offset` is the code index of block 0; `minima` at the queries' rows.
void register_kernel(const float* queries, int64_t dim, const float* packed, const float* norms, int64_t first,
                     int64_t last, int32_t offset, float* minimum, int32_t* minimum_index) {
  constexpr int Q = kRegisterQueries;
  const Ints lane = lane_ids();
  Floats value[Q];
  Ints index[Q];
  for (int q = 0; q < Q; ++q) {
    value[q] = load(minimum + q * kLanes);
    index[q] = load_ints(minimum_index + q * kLanes);
  }
  for (int64_t block = first; block < last; ++block) {
    Floats distance[Q];
    const Floats norm = load(norms + block * kLanes);
    for (int q = 0; q < Q; ++q) distance[q] = norm;
    const float* codes = packed + block * dim * kLanes;
    for (int64_t j = 0; j < dim; ++j) {
      const Floats code = load(codes + j * kLanes);
      for (int q = 0; q < Q; ++q) distance[q] += queries[q * dim + j] * code;
    }
    const Ints code_index = lane + static_cast<int32_t>(offset + block * kLanes);
    for (int q = 0; q < Q; ++q) {
      const Ints closer = distance[q] < value[q];
      value[q] = closer ? distance[q] : value[q];
      index[q] = closer ? code_index : index[q];
    }
  }
  for (int q = 0; q < Q; ++q) {
    store(minimum + q * kLanes, value[q]);
    store_ints(minimum_index + q * kLanes, index[q]);
  }
}

// "tile": kTileQueries queries against R code vectors at a time, blocks [first, last); the minima are updated
// in L1 once per tile, in code order (so a tie keeps the lower index).
template <int R>
void tile_kernel(const float* queries, int64_t dim, const float* packed, const float* norms, int64_t first,
                 int64_t last, int32_t offset, float* minimum, int32_t* minimum_index) {
  constexpr int Q = kTileQueries;
  const Ints lane = lane_ids();
  for (int64_t block = first; block + R <= last; block += R) {
    Floats distance[Q][R];
    for (int r = 0; r < R; ++r) {
      const Floats norm = load(norms + (block + r) * kLanes);
      for (int q = 0; q < Q; ++q) distance[q][r] = norm;
    }
    const float* codes = packed + block * dim * kLanes;
    for (int64_t j = 0; j < dim; ++j) {
      Floats code[R];
      for (int r = 0; r < R; ++r) code[r] = load(codes + (r * dim + j) * kLanes);
      for (int q = 0; q < Q; ++q) {
        const float scaled = queries[q * dim + j];
        for (int r = 0; r < R; ++r) distance[q][r] += scaled * code[r];
      }
    }
    for (int q = 0; q < Q; ++q) {
      Floats value = load(minimum + q * kLanes);
      Ints index = load_ints(minimum_index + q * kLanes);
      for (int r = 0; r < R; ++r) {
        const Ints closer = distance[q][r] < value;
        value = closer ? distance[q][r] : value;
        index = closer ? lane + static_cast<int32_t>(offset + (block + r) * kLanes) : index;
      }
      store(minimum + q * kLanes, value);
      store_ints(minimum_index + q * kLanes, index);
    }
  }
}

// Codes [start, start + blocks * W) of the (K, d) codebook -> (blocks, d, W) in `packed` and their squared
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

// One chunk of code blocks [start, stop) for `rows_padded` scaled queries, with the shape asked for.
void search_chunk(bool tile, const float* scaled, int64_t rows_padded, int64_t dim, const float* codes,
                  const float* norm, int64_t start, int64_t stop, int32_t offset, LaneMinima& minima) {
  if (!tile) {
    for (int64_t r = 0; r < rows_padded; r += kRegisterQueries)
      register_kernel(scaled + r * dim, dim, codes, norm, start, stop, offset, minima.value.data() + r * kLanes,
                      minima.index.data() + r * kLanes);
    return;
  }
  const int64_t whole = start + (stop - start) / kTileCodes * kTileCodes;
  for (int64_t r = 0; r < rows_padded; r += kTileQueries) {
    float* value = minima.value.data() + r * kLanes;
    int32_t* index = minima.index.data() + r * kLanes;
    tile_kernel<kTileCodes>(scaled + r * dim, dim, codes, norm, start, whole, offset, value, index);
    tile_kernel<1>(scaled + r * dim, dim, codes, norm, whole, stop, offset, value, index);
  }
}

}  // namespace

// (N, d) fp32 queries, (K, d) fp32 codes -> (N,) int64 index of the nearest code.
// `query_block`: queries per task; `chunk_bytes`: packed codes kept in L2 while a query block passes over them;
// `shape`: "register", "tile", or "auto" (the tile from kTileFromDim on, the register shape below it).
torch::Tensor nearest_code(torch::Tensor queries, torch::Tensor codebook, int64_t query_block, int64_t chunk_bytes,
                           const std::string& shape) {
  TORCH_CHECK(queries.dim() == 2 && codebook.dim() == 2 && queries.size(1) == codebook.size(1),
              "expected (N, d) queries and a (K, d) codebook");
  TORCH_CHECK(queries.scalar_type() == torch::kFloat && codebook.scalar_type() == torch::kFloat, "expected fp32");
  TORCH_CHECK(queries.device().is_cpu() && codebook.device().is_cpu(), "expected CPU tensors");
  TORCH_CHECK(codebook.size(0) > 0 && codebook.size(0) < (int64_t{1} << 31) - 2 * kLanes * kTileCodes,
              "K out of range");
  TORCH_CHECK(query_block > 0 && chunk_bytes > 0, "query_block and chunk_bytes must be positive");
  TORCH_CHECK(shape == "auto" || shape == "register" || shape == "tile", "shape must be auto, register or tile");
  queries = queries.contiguous();
  codebook = codebook.contiguous();
  const int64_t n = queries.size(0), dim = queries.size(1), size = codebook.size(0);
  const bool tile = shape == "tile" || (shape == "auto" && dim >= kTileFromDim);
  const int64_t group = tile ? kTileQueries : kRegisterQueries;  // queries per micro-kernel call
  const int64_t block_bytes = dim * kLanes * int64_t(sizeof(float));
  const int64_t threads = at::get_num_threads();
  const int64_t blocks = (size + kLanes - 1) / kLanes;
  const int64_t chunk = std::max<int64_t>(kTileCodes, chunk_bytes / block_bytes);
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
      const int64_t padded = (query_block + group - 1) / group * group;
      std::vector<float> scaled(padded * dim);
      LaneMinima minima;
      for (int64_t task = begin; task < end; ++task) {
        const int64_t row = (task / splits) * query_block, split = task % splits;
        const int64_t rows = std::min(query_block, n - row), rows_padded = (rows + group - 1) / group * group;
        const int64_t first = slab_blocks * split / splits, last = slab_blocks * (split + 1) / splits;
        for (int64_t i = 0; i < rows * dim; ++i) scaled[i] = -2.f * query[row * dim + i];
        std::fill(scaled.begin() + rows * dim, scaled.begin() + rows_padded * dim, 0.f);
        minima.reset(rows_padded);
        for (int64_t start = first; start < last; start += chunk)
          search_chunk(tile, scaled.data(), rows_padded, dim, codes, norm, start, std::min(start + chunk, last), offset,
                       minima);
        minima.fold(rows, value + split * n + row, index + split * n + row);
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

// Multiply-adds per second of this build's vectors on every thread: kPeakChains independent `acc * a + b` chains per
// thread (more than latency x throughput: a fused multiply-add where the ISA has one, a multiply and an add in the
// portable build), `iterations` steps each. The arithmetic limit of the search; the benchmark takes the best of a
// few calls, after a first one that starts the threads.
#if FVQ_LANES == 16
constexpr int kPeakChains = 24;
#elif FVQ_LANES == 8
constexpr int kPeakChains = 12;
#else
constexpr int kPeakChains = 14;
#endif

double fma_peak(int64_t iterations) {
  const int64_t threads = at::get_num_threads();
  std::vector<float> sink(threads * kLanes);
  const auto begin = std::chrono::steady_clock::now();
  at::parallel_for(0, threads, 1, [&](int64_t first, int64_t last) {
    for (int64_t t = first; t < last; ++t) {
      Floats acc[kPeakChains];
      const Floats zero = load(sink.data()) * 0.f;
      const Floats a = zero + 0.999999f, b = zero + 1e-7f;
      for (int i = 0; i < kPeakChains; ++i) acc[i] = a * static_cast<float>(i + 1);
      for (int64_t it = 0; it < iterations; ++it) {
#pragma GCC unroll 24
        for (int i = 0; i < kPeakChains; ++i) acc[i] = acc[i] * a + b;
      }
      Floats total = acc[0];
      for (int i = 1; i < kPeakChains; ++i) total += acc[i];
      store(sink.data() + t * kLanes, total);
    }
  });
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
  return static_cast<double>(threads) * iterations * kPeakChains * kLanes / seconds;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("nearest_code", &nearest_code, "Exact nearest-code search, (N, d), (K, d) fp32 -> (N,) int64",
        pybind11::arg("queries"), pybind11::arg("codebook"), pybind11::arg("query_block"),
        pybind11::arg("chunk_bytes"), pybind11::arg("shape") = "auto");
  m.def("fma_peak", &fma_peak, "multiply-adds per second of this build's vectors on every thread",
        pybind11::arg("iterations"));
  m.attr("isa") = FVQ_STRING(FVQ_ISA);
  m.attr("lanes") = kLanes;
}
