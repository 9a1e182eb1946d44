// Exact nearest-code search on the CPU, distances reduced where they are computed.
//
// This file is compiled once per instruction set (`kernel.py`): FVQ_LANES is the vector width in floats that
// the target's registers hold (16 for x86-64-v4 / AVX-512, 8 for x86-64-v3 / AVX2, 4 for the portable build:
// SSE2 on x86-64, NEON on ARM), and the register blocking below is sized for that target's register file.
//
// The codebook is packed as (K/W, d, W): W codes side by side per dimension, so one vector holds one dimension
// of W codes. Three micro-kernels, all exact, all computing every distance the same way (||c||^2, then one fused
// multiply-add per dimension in dimension order), so they give the same fp32 distances and the same ids:
// - "register": Q queries against one vector of codes at a time; the running minimum of each (query, lane)
//   and its index stay in registers across the code blocks (3 Q + 3 vectors).
// - "tile": Q queries against R vectors of codes (a GEMM-style Q x R tile of accumulators, Q broadcasts and R
//   code loads per dimension); the running minimum is kept in L1 and updated once per tile. Best for large d.
// - "screen": a Q x R tile whose distances only lower a per-(query, lane) minimum, one min instruction each, with
//   no index and no compare-and-blend; once per group of blocks each query's minimum is checked against its best
//   so far, and the rare group that beats it is computed again for that query to find the index. Best for small
//   d, where the register and tile shapes spend a compare and two blends on every d multiply-adds.
// No distance is ever written to memory.
//
// Memory is bounded whatever N and K: the codes are packed a slab at a time (a few MiB), and the running
// minimum of each query is one (value, index) pair. Within a slab, every query block (a parallel task, handed to
// the threads one at a time as they finish) passes over L2-sized chunks of codes. With few query blocks the slab
// is also split across tasks, each split keeping its own minima, merged at the end. Ties go to the lowest index
// everywhere (strict < within a lane, lowest index among equal values across lanes, tiles and slabs), so the
// result is argmin's whatever the number of threads.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

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
constexpr int kScreenQueries = 8, kScreenCodes = 2;  // 16 accumulators + 8 minima + 2 code vectors = 26
#else
constexpr int kRegisterQueries = 4;  // 4 + 4 + 4 + 3 = 15
constexpr int kTileQueries = 6, kTileCodes = 2;  // 12 accumulators + 2 code vectors + 1 broadcast = 15
constexpr int kTileFromDim = 1;
constexpr int kScreenQueries = 4, kScreenCodes = 2;  // 8 accumulators + 4 minima + 2 code vectors + 1 broadcast
#endif
// "screen": blocks per group (one check of the minima per group), and where `auto` takes it: up to d = 16, where
// each query passes at least 4 d groups. The first group and each new best are computed twice (on random codes
// 1 + ln(groups) groups per query), a cost that does not shrink with d as the blends saved do. Measured in issue
// 34 on the 2-core Xeon (one thread, CPU time), screen / the better of register and tile: at d = 8, 1.10x with AVX2
// at K = 4096 (32 groups), 1.30-1.39x (AVX2) and 1.26-1.27x (AVX-512) at K = 16k-65k, 0.79x (AVX2) at K = 1024;
// at d = 16, 0.90x at K = 4096 and 1.06-1.12x at K = 16k-65k with AVX2, 1.11-1.18x with AVX-512; the tile leads
// from d = 64 with AVX2.
constexpr int64_t kScreenGroup = 16;
constexpr int64_t kScreenToDim = 16, kScreenGroupsPerDim = 4;

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

// "screen": kScreenQueries queries against kScreenCodes code vectors per step. Each (query, lane) keeps only the
// smallest distance of the current group of kScreenGroup blocks: one min per distance vector (no index, no
// compare-and-blend). After the group, each query's group minimum is compared with its best so far; only in a
// group that beats it (on random data the first group, then about ln(groups) more per query) are that query's
// distances over the group computed again, to find the index. `best` / `best_index`: the queries' best so far.
inline Floats splat(float x) { return Floats{} + x; }

// Lane by lane, `distance` where it is below `low`: one min instruction (a NaN distance never enters).
inline Floats lower(Floats distance, Floats low) { return distance < low ? distance : low; }

// Bit l set where lane l of a comparison's mask is set (a movemask on x86).
inline uint32_t lane_bits(Ints mask) {
#if defined(__AVX512DQ__) && FVQ_LANES == 16
  return _mm512_movepi32_mask(reinterpret_cast<__m512i>(mask));
#elif defined(__AVX__) && FVQ_LANES == 8
  return static_cast<uint32_t>(_mm256_movemask_ps(reinterpret_cast<__m256>(mask)));
#elif defined(__SSE2__) && FVQ_LANES == 4
  return static_cast<uint32_t>(_mm_movemask_ps(reinterpret_cast<__m128>(mask)));
#else
  uint32_t bits = 0;
  for (int l = 0; l < kLanes; ++l) bits |= uint32_t(mask[l] != 0) << l;
  return bits;
#endif
}

// The rare path: one query's distances to blocks [first, last), the same operations in the same order as in the
// step, so the same fp32 values (the tests check it against the other shapes on Gaussian data); `target`, the
// group's minimum in the step, is below `best`: its first occurrence in code order (lowest block, then lowest
// lane) is the new best.
__attribute__((noinline)) void screen_resolve(const float* query, int64_t dim, const float* packed,
                                              const float* norms, int64_t first, int64_t last, int32_t offset,
                                              float target, float& best, int32_t& best_index) {
  const Floats wanted = splat(target);
  for (int64_t block = first; block < last; ++block) {
    Floats distance = load(norms + block * kLanes);
    const float* codes = packed + block * dim * kLanes;
    for (int64_t j = 0; j < dim; ++j) distance += query[j] * load(codes + j * kLanes);
    if (const uint32_t hits = lane_bits(distance == wanted)) {
      best = target;
      best_index = static_cast<int32_t>(offset + block * kLanes + __builtin_ctz(hits));
      return;
    }
  }
}

template <int R>
inline void screen_step(const float* queries, int64_t dim, const float* packed, const float* norms, int64_t block,
                        Floats* low) {
  constexpr int Q = kScreenQueries;
  Floats distance[Q][R];
  for (int r = 0; r < R; ++r) {
    const Floats norm = load(norms + (block + r) * kLanes);
    for (int q = 0; q < Q; ++q) distance[q][r] = norm;
  }
  const float* codes = packed + block * dim * kLanes;
  // Unrolled: at d = 8 the loop's own instructions (and the compiler's addressing) otherwise cost a quarter of
  // the time (measured: 0.67x with AVX2).
#pragma GCC unroll 8
  for (int64_t j = 0; j < dim; ++j) {
    Floats code[R];
    for (int r = 0; r < R; ++r) code[r] = load(codes + (r * dim + j) * kLanes);
    for (int q = 0; q < Q; ++q) {
      const float scaled = queries[q * dim + j];
      for (int r = 0; r < R; ++r) distance[q][r] += scaled * code[r];
    }
  }
  for (int q = 0; q < Q; ++q)
    for (int r = 0; r < R; ++r) low[q] = lower(distance[q][r], low[q]);
}

void screen_kernel(const float* queries, int64_t dim, const float* packed, const float* norms, int64_t first,
                   int64_t last, int32_t offset, float* best, int32_t* best_index) {
  constexpr int Q = kScreenQueries, R = kScreenCodes;
  for (int64_t group = first; group < last; group += kScreenGroup) {
    const int64_t end = std::min(group + kScreenGroup, last);
    Floats low[Q];
    for (int q = 0; q < Q; ++q) low[q] = splat(best[q]);
    int64_t block = group;
    for (; block + R <= end; block += R) screen_step<R>(queries, dim, packed, norms, block, low);
    for (; block < end; ++block) screen_step<1>(queries, dim, packed, norms, block, low);
    uint32_t beaten = 0;  // bit q: query q's group minimum is below its best (one branch per group, not per query)
    for (int q = 0; q < Q; ++q) beaten |= uint32_t(lane_bits(low[q] < splat(best[q])) != 0) << q;
    for (; beaten != 0; beaten &= beaten - 1) {
      const int q = __builtin_ctz(beaten);
      float target = low[q][0];
      for (int l = 1; l < kLanes; ++l) target = std::min(target, low[q][l]);
      screen_resolve(queries + q * dim, dim, packed, norms, group, end, offset, target, best[q], best_index[q]);
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
enum class Shape { kRegister, kTile, kScreen };

void search_chunk(Shape shape, const float* scaled, int64_t rows_padded, int64_t dim, const float* codes,
                  const float* norm, int64_t start, int64_t stop, int32_t offset, LaneMinima& minima, float* best,
                  int32_t* best_index) {
  if (shape == Shape::kScreen) {
    for (int64_t r = 0; r < rows_padded; r += kScreenQueries)
      screen_kernel(scaled + r * dim, dim, codes, norm, start, stop, offset, best + r, best_index + r);
    return;
  }
  if (shape == Shape::kRegister) {
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
// `shape`: "register", "tile", "screen", or "auto" (the screen up to kScreenToDim where each task passes at least
// kScreenGroupsPerDim x d groups; otherwise the tile from kTileFromDim on, the register shape below it).
torch::Tensor nearest_code(torch::Tensor queries, torch::Tensor codebook, int64_t query_block, int64_t chunk_bytes,
                           const std::string& shape) {
  TORCH_CHECK(queries.dim() == 2 && codebook.dim() == 2 && queries.size(1) == codebook.size(1),
              "expected (N, d) queries and a (K, d) codebook");
  TORCH_CHECK(queries.scalar_type() == torch::kFloat && codebook.scalar_type() == torch::kFloat, "expected fp32");
  TORCH_CHECK(queries.device().is_cpu() && codebook.device().is_cpu(), "expected CPU tensors");
  TORCH_CHECK(codebook.size(0) > 0 && codebook.size(0) < (int64_t{1} << 31) - 2 * kLanes * kTileCodes,
              "K out of range");
  TORCH_CHECK(query_block > 0 && chunk_bytes > 0, "query_block and chunk_bytes must be positive");
  TORCH_CHECK(shape == "auto" || shape == "register" || shape == "tile" || shape == "screen",
              "shape must be auto, register, tile or screen");
  queries = queries.contiguous();
  codebook = codebook.contiguous();
  const int64_t n = queries.size(0), dim = queries.size(1), size = codebook.size(0);
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
  const bool screen_pays = dim <= kScreenToDim && blocks / splits >= kScreenGroupsPerDim * dim * kScreenGroup;
  const Shape kind = shape == "screen" || (shape == "auto" && screen_pays) ? Shape::kScreen
                     : shape == "tile" || (shape == "auto" && dim >= kTileFromDim) ? Shape::kTile
                                                                                   : Shape::kRegister;
  const int64_t group = kind == Shape::kScreen ? kScreenQueries : kind == Shape::kTile ? kTileQueries
                                                                                       : kRegisterQueries;
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
    // One task at a time to whichever thread is free (as FAISS's `schedule(dynamic)`): a thread slowed by another
    // process on its core does not hold up the others at the end of the slab.
    const int64_t tasks = query_blocks * splits;
    std::atomic<int64_t> next_task{0};
    at::parallel_for(0, std::min(threads, tasks), 1, [&](int64_t, int64_t) {
      const int64_t padded = (query_block + group - 1) / group * group;
      std::vector<float> scaled(padded * dim);
      LaneMinima minima;
      std::vector<float> best(padded);
      std::vector<int32_t> best_index(padded);
      for (int64_t task; (task = next_task.fetch_add(1, std::memory_order_relaxed)) < tasks;) {
        const int64_t row = (task / splits) * query_block, split = task % splits;
        const int64_t rows = std::min(query_block, n - row), rows_padded = (rows + group - 1) / group * group;
        const int64_t first = slab_blocks * split / splits, last = slab_blocks * (split + 1) / splits;
        for (int64_t i = 0; i < rows * dim; ++i) scaled[i] = -2.f * query[row * dim + i];
        std::fill(scaled.begin() + rows * dim, scaled.begin() + rows_padded * dim, 0.f);
        float* task_value = value + split * n + row;
        int32_t* task_index = index + split * n + row;
        if (kind == Shape::kScreen) {  // the best of the slabs before, so that only a strictly better code wins
          std::copy(task_value, task_value + rows, best.begin());
          std::copy(task_index, task_index + rows, best_index.begin());
          std::fill(best.begin() + rows, best.end(), std::numeric_limits<float>::infinity());
        } else {
          minima.reset(rows_padded);
        }
        for (int64_t start = first; start < last; start += chunk)
          search_chunk(kind, scaled.data(), rows_padded, dim, codes, norm, start, std::min(start + chunk, last), offset,
                       minima, best.data(), best_index.data());
        if (kind == Shape::kScreen) {
          std::copy(best.begin(), best.begin() + rows, task_value);
          std::copy(best_index.begin(), best_index.begin() + rows, task_index);
        } else {
          minima.fold(rows, task_value, task_index);
        }
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
