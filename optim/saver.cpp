#include "optim/saver.hpp"

#include <bit>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <set>

#include "framework/array.hpp"
#include "framework/errors.hpp"
#include "framework/ops.hpp"
#include "framework/session.hpp"
#include "framework/variable.hpp"

namespace kiln::train {

static_assert(std::endian::native == std::endian::little,
              "kiln checkpoints store raw little-endian elements; add byte swapping for big-endian hosts");

namespace {

constexpr char kMagic[8] = {'K', 'I', 'L', 'N', 'C', 'K', 'P', 'T'};
constexpr std::uint32_t kVersion = 1;

template <class T>
void put(std::ostream& os, T v) {
  os.write(reinterpret_cast<const char*>(&v), sizeof(T));
}

struct Reader {
  std::istream& is;
  const std::string& path;
  template <class T>
  T get() {
    T v{};
    bytes(reinterpret_cast<char*>(&v), sizeof(T));
    return v;
  }
  void bytes(char* p, std::size_t n) {
    if (!is.read(p, static_cast<std::streamsize>(n)))
      throw InvalidArgumentError("Checkpoint " + path + " is truncated or corrupt");
  }
};

std::size_t element_size(DType t) {
  return visit_dtype(t, []<class T>() { return sizeof(T); });
}

struct Entry {
  DType dtype;
  Shape shape;
  Array value;
};

}  // namespace

Saver::Saver(std::vector<Variable> var_list) : vars_(std::move(var_list)) {
  if (vars_.empty()) vars_ = global_variables();
  if (vars_.empty()) throw ValueError("No variables to save");
  std::set<std::string> names;
  Graph& g = vars_.front().graph();
  for (auto& v : vars_) {
    if (!v.valid()) throw ValueError("Saver: var_list holds a null Variable");
    if (&v.graph() != &g) throw ValueError("Saver: variable '" + v.name() + "' belongs to another graph");
    if (!names.insert(v.op_name()).second)
      throw ValueError("Saver: at least two variables have the same name: " + v.op_name());
  }
  auto as_default = g.as_default();
  detail::InitScope init_scope;  // restoring never depends on a training step
  name_scope ns("save");
  std::vector<GraphElement> assigns;
  for (auto& v : vars_) {
    Tensor value = placeholder(v.dtype(), v.shape(), "restore_value");
    restore_values_.push_back(value);
    assigns.emplace_back(assign(v, value, "restore"));
  }
  restore_op_ = group(assigns, "restore_all");
}

std::string Saver::save(Session& sess, const std::string& path, std::optional<std::int64_t> global_step) const {
  if (&sess.graph() != &vars_.front().graph())
    throw ValueError("Saver::save: the session runs another graph than the saver's variables");
  const std::string file = global_step ? path + "-" + std::to_string(*global_step) : path;
  const std::vector<GraphElement> fetches(vars_.begin(), vars_.end());
  const std::vector<Array> values = sess.run(fetches);

  const std::string tmp = file + ".tmp";
  {
    std::ofstream os(tmp, std::ios::binary | std::ios::trunc);
    if (!os) throw NotFoundError("Saver::save: cannot open " + tmp + " for writing");
    os.write(kMagic, sizeof(kMagic));
    put<std::uint32_t>(os, kVersion);
    put<std::uint32_t>(os, static_cast<std::uint32_t>(vars_.size()));
    for (std::size_t i = 0; i < vars_.size(); ++i) {
      const std::string& name = vars_[i].op_name();
      const Array& a = values[i];
      put<std::uint32_t>(os, static_cast<std::uint32_t>(name.size()));
      os.write(name.data(), static_cast<std::streamsize>(name.size()));
      put<std::uint8_t>(os, static_cast<std::uint8_t>(a.dtype()));
      const Shape shape = a.shape();
      const auto& dims = shape.dims();
      put<std::uint32_t>(os, static_cast<std::uint32_t>(dims.size()));
      for (auto d : dims) put<std::int64_t>(os, d);
      const std::uint64_t nbytes = static_cast<std::uint64_t>(a.size()) * element_size(a.dtype());
      put<std::uint64_t>(os, nbytes);
      visit_dtype(a.dtype(), [&]<class T>() {
        const auto& x = a.as<T>();
        os.write(reinterpret_cast<const char*>(x.data()), static_cast<std::streamsize>(nbytes));
      });
    }
    if (!os.flush()) throw NotFoundError("Saver::save: failed writing " + tmp);
  }
  if (std::rename(tmp.c_str(), file.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw NotFoundError("Saver::save: cannot rename " + tmp + " to " + file);
  }
  return file;
}

void Saver::restore(Session& sess, const std::string& path) const {
  if (&sess.graph() != &vars_.front().graph())
    throw ValueError("Saver::restore: the session runs another graph than the saver's variables");
  std::ifstream is(path, std::ios::binary);
  if (!is) throw NotFoundError("Unable to open checkpoint file " + path);
  Reader r{is, path};
  char magic[8];
  r.bytes(magic, sizeof(magic));
  if (std::memcmp(magic, kMagic, sizeof(magic)) != 0)
    throw InvalidArgumentError("File " + path + " is not a kiln checkpoint");
  const auto version = r.get<std::uint32_t>();
  if (version != kVersion)
    throw InvalidArgumentError("Checkpoint " + path + " has format version " + std::to_string(version) +
                               ", this kiln reads version " + std::to_string(kVersion));
  const auto count = r.get<std::uint32_t>();
  std::map<std::string, Entry> entries;
  for (std::uint32_t e = 0; e < count; ++e) {
    std::string name(r.get<std::uint32_t>(), '\0');
    r.bytes(name.data(), name.size());
    const auto code = r.get<std::uint8_t>();
    if (code >= kNumDTypes) throw InvalidArgumentError("Checkpoint " + path + ": entry " + name + " has a bad dtype");
    const auto dtype = static_cast<DType>(code);
    const auto rank = r.get<std::uint32_t>();
    std::vector<std::int64_t> dims(rank);
    std::vector<std::size_t> udims(rank);
    std::uint64_t n = 1;
    for (std::uint32_t k = 0; k < rank; ++k) {
      dims[k] = r.get<std::int64_t>();
      if (dims[k] < 0) throw InvalidArgumentError("Checkpoint " + path + ": entry " + name + " has a negative dimension");
      udims[k] = static_cast<std::size_t>(dims[k]);
      n *= static_cast<std::uint64_t>(dims[k]);
    }
    const auto nbytes = r.get<std::uint64_t>();
    if (nbytes != n * element_size(dtype))
      throw InvalidArgumentError("Checkpoint " + path + ": entry " + name + " has a size that does not match its shape");
    Array a = make_array(dtype, udims);
    visit_dtype(dtype, [&]<class T>() {
      auto& x = a.mutable_as<T>();
      r.bytes(reinterpret_cast<char*>(x.data()), static_cast<std::size_t>(nbytes));
    });
    entries[name] = Entry{dtype, Shape(dims), a};
  }

  FeedDict feeds;
  for (std::size_t i = 0; i < vars_.size(); ++i) {
    const Variable& v = vars_[i];
    auto it = entries.find(v.op_name());
    if (it == entries.end()) throw NotFoundError("Key " + v.op_name() + " not found in checkpoint " + path);
    const Entry& e = it->second;
    if (e.dtype != v.dtype())
      throw InvalidArgumentError("Restoring variable '" + v.name() + "' from " + path + ": the checkpoint holds dtype " +
                                 dtype_name(e.dtype) + ", the variable is " + dtype_name(v.dtype()));
    if (!(e.shape == v.shape()))
      throw InvalidArgumentError("Restoring variable '" + v.name() + "' from " + path +
                                 ": Assign requires shapes of both tensors to match. lhs shape= " +
                                 v.shape().to_string() + " rhs shape= " + e.shape.to_string());
    feeds.emplace_back(restore_values_[i], e.value);
  }
  sess.run(restore_op_, feeds);
}

}  // namespace kiln::train
