// Writes the seed corpus of the fuzz targets: `make_corpus <dir>` fills <dir>/checkpoint and
// <dir>/idx (scripts/fuzz.sh corpus; the result is committed in tests/fuzz/corpus/, beside the two
// version 1 checkpoints v1_*.ckpt written by kiln's Saver before format 2, and the small inputs the
// fuzzers found). Each seed is a valid file or one mutation of one, named for what it holds; the
// names of valid files start with "ok_", "v1_" or "v2_" (fuzz.corpus_replay checks that those load
// and that every other file is rejected with a kiln::Error).
#include <zlib.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "optim/saver_format.hpp"

namespace {

namespace fs = std::filesystem;
namespace ck = kiln::train::checkpoint;
using Bytes = std::vector<std::uint8_t>;

void write(const fs::path& path, const Bytes& b) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

template <class T>
Bytes raw(const std::vector<T>& v) {
  Bytes b(v.size() * sizeof(T));
  if (!b.empty()) std::memcpy(b.data(), v.data(), b.size());
  return b;
}

struct Tensor {
  std::string name;
  kiln::DType dtype;
  std::vector<std::int64_t> dims;
  Bytes data;
};

Bytes checkpoint(const std::vector<Tensor>& ts) {
  std::vector<ck::EntryToWrite> entries;
  for (const auto& t : ts) entries.push_back({t.name, t.dtype, t.dims, t.data});
  Bytes out = ck::encode_index(entries);
  for (const auto& t : ts) out.insert(out.end(), t.data.begin(), t.data.end());
  return out;
}

// Rewrites the index checksum after a mutation of the index, so the mutation reaches the parser.
Bytes fix_index_crc(Bytes b) {
  std::uint64_t n = 0;
  std::memcpy(&n, b.data() + 16, 8);
  const std::uint32_t crc = ck::crc32c(std::span<const std::uint8_t>(b).first(24 + n));
  std::memcpy(b.data() + 24 + n, &crc, 4);
  return b;
}

template <class T>
Bytes poke(Bytes b, std::size_t at, T v) {
  std::memcpy(b.data() + at, &v, sizeof(T));
  return b;
}

Bytes gzip(const Bytes& plain) {
  z_stream zs{};
  deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
  Bytes out(deflateBound(&zs, static_cast<uLong>(plain.size())) + 32);
  zs.next_in = const_cast<Bytes::value_type*>(plain.data());
  zs.avail_in = static_cast<unsigned>(plain.size());
  zs.next_out = out.data();
  zs.avail_out = static_cast<unsigned>(out.size());
  deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

Bytes idx(const std::vector<std::uint32_t>& dims, std::size_t ndata, std::uint8_t type = 0x08) {
  Bytes b = {0, 0, type, static_cast<std::uint8_t>(dims.size())};
  for (auto d : dims)
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<std::uint8_t>(d >> s));
  for (std::size_t i = 0; i < ndata; ++i) b.push_back(static_cast<std::uint8_t>(i * 7 + 3));
  return b;
}

Bytes cat(Bytes a, const Bytes& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

Bytes cut(Bytes b, std::size_t n) {
  b.resize(n);
  return b;
}

Bytes flip(Bytes b, std::size_t at, std::uint8_t mask) {
  b[at] ^= mask;
  return b;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_corpus <dir>\n");
    return 2;
  }
  const fs::path ckd = fs::path(argv[1]) / "checkpoint", idd = fs::path(argv[1]) / "idx";
  fs::create_directories(ckd);
  fs::create_directories(idd);

  const Bytes all = checkpoint({
      {"w", kiln::DType::float32, {2, 3}, raw(std::vector<float>{1.5f, -2, 3, 4, 5, 6.25f})},
      {"b", kiln::DType::float64, {3}, raw(std::vector<double>{0.1, 0.2, 0.3})},
      {"global_step", kiln::DType::int64, {}, raw(std::vector<std::int64_t>{41})},
      {"flags", kiln::DType::boolean, {2}, Bytes{1, 0}},
      {"scope/n", kiln::DType::int32, {2}, raw(std::vector<std::int32_t>{7, -8})},
  });
  // Offsets in `all`: header 24 bytes, then the first entry "w": name_len at 24, name at 28,
  // dtype at 29, rank at 30, dims at 34 and 42, nbytes at 50, data crc at 58.
  std::uint64_t index_nbytes = 0;
  std::memcpy(&index_nbytes, all.data() + 16, 8);
  const std::size_t data_at = 24 + index_nbytes + 4;
  write(ckd / "v2_all_dtypes.ckpt", all);
  write(ckd / "v2_empty_tensor.ckpt", checkpoint({{"empty", kiln::DType::float32, {0, 3}, {}}}));
  write(ckd / "v2_no_entries.ckpt", checkpoint({}));
  write(ckd / "v2_scalar.ckpt",
        checkpoint({{"s", kiln::DType::float32, {}, raw(std::vector<float>{2.5f})}}));
  write(ckd / "bad_magic.ckpt", flip(all, 0, 0x20));
  write(ckd / "bad_version.ckpt", poke<std::uint32_t>(all, 8, 3));
  write(ckd / "cut_header.ckpt", cut(all, 20));
  write(ckd / "cut_index.ckpt", cut(all, 40));
  write(ckd / "cut_data.ckpt", cut(all, all.size() - 5));
  write(ckd / "trailing_byte.ckpt", cat(all, {0}));
  write(ckd / "index_crc_flipped.ckpt", flip(all, 24 + index_nbytes, 0x01));
  write(ckd / "data_bit_flipped.ckpt", flip(all, data_at + 3, 0x10));
  write(ckd / "name_len_high_byte.ckpt", fix_index_crc(flip(all, 27, 0x80)));
  write(ckd / "rank_high_byte.ckpt", fix_index_crc(flip(all, 33, 0x40)));
  write(ckd / "dim_high_byte.ckpt", fix_index_crc(flip(all, 41, 0x10)));
  write(ckd / "dim_negative.ckpt", fix_index_crc(poke<std::int64_t>(all, 34, -2)));
  write(ckd / "nbytes_high_byte.ckpt", fix_index_crc(flip(all, 57, 0x01)));
  write(ckd / "bad_dtype.ckpt", fix_index_crc(poke<std::uint8_t>(all, 29, 9)));
  write(ckd / "index_size_huge.ckpt", poke<std::uint64_t>(all, 16, std::uint64_t{1} << 62));
  write(ckd / "count_too_big.ckpt", fix_index_crc(poke<std::uint32_t>(all, 12, 6)));
  write(ckd / "count_too_small.ckpt", fix_index_crc(poke<std::uint32_t>(all, 12, 4)));
  write(ckd / "bool_byte_2.ckpt",
        checkpoint({{"flags", kiln::DType::boolean, {2}, Bytes{1, 2}}}));  // the data crc matches
  {  // the same entry twice: encode_index refuses, so build it by hand from a one-entry file
    const Bytes one =
        checkpoint({{"a", kiln::DType::int32, {1}, raw(std::vector<std::int32_t>{1})}});
    std::uint64_t n = 0;
    std::memcpy(&n, one.data() + 16, 8);
    Bytes two(one.begin(), one.begin() + 24);
    two.insert(two.end(), one.begin() + 24, one.begin() + 24 + static_cast<long>(n));
    two.insert(two.end(), one.begin() + 24, one.begin() + 24 + static_cast<long>(n));
    two = poke<std::uint32_t>(two, 12, 2);
    two = poke<std::uint64_t>(two, 16, 2 * n);
    two.insert(two.end(), 4, 0);
    two.insert(two.end(), one.end() - 4, one.end());
    two.insert(two.end(), one.end() - 4, one.end());
    write(ckd / "duplicate_name.ckpt", fix_index_crc(two));
  }

  const Bytes images = idx({3, 4, 5}, 60), labels = idx({3}, 3);
  const Bytes images_gz = gzip(images);
  write(idd / "ok_images_plain.idx", images);
  write(idd / "ok_images.gz", images_gz);
  write(idd / "ok_labels.gz", gzip(labels));
  write(idd / "ok_rank2_plain.idx", idx({2, 3}, 6));
  write(idd / "ok_zero_dim.gz", gzip(idx({0, 28, 28}, 0)));
  write(idd / "ok_two_members.gz",
        cat(gzip(cut(images, 30)), gzip(Bytes(images.begin() + 30, images.end()))));
  write(idd / "empty", {});
  write(idd / "float_type.gz", gzip(idx({2}, 8, 0x0D)));
  write(idd / "text.gz", gzip(Bytes{'h', 'e', 'l', 'l', 'o'}));
  write(idd / "short_header.gz", gzip(cut(images, 9)));
  write(idd / "short_data.gz", gzip(cut(images, 50)));
  write(idd / "extra_data.gz", gzip(cat(images, {1, 2})));
  write(idd / "extra_data_plain.idx", cat(images, {1}));
  write(idd / "trailer_cut.gz", cut(images_gz, images_gz.size() - 3));
  write(idd / "crc_flipped.gz", flip(images_gz, images_gz.size() - 6, 0x01));
  write(idd / "length_flipped.gz", flip(images_gz, images_gz.size() - 2, 0x01));
  write(idd / "trailing_garbage.gz", cat(images_gz, {'x', 'y', 'z'}));
  write(idd / "trailing_byte.gz", cat(images_gz, {0x1f}));
  write(idd / "deflate_corrupt.gz", flip(images_gz, 14, 0xff));
  write(idd / "huge_dims.idx", idx({0xFFFFFFFFu, 0xFFFFFFFFu, 2}, 4));
  write(idd / "huge_dim_gz.gz", gzip(idx({0x7FFFFFFFu}, 10)));
  return 0;
}
