#include "optim/saver.hpp"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "framework/array.hpp"
#include "framework/errors.hpp"
#include "framework/ops.hpp"
#include "framework/session.hpp"
#include "framework/variable.hpp"
#include "distributed/communicator.hpp"
#include "optim/saver_format.hpp"

namespace kiln::train {

static_assert(sizeof(bool) == 1, "checkpoints store bool elements as one byte each");

namespace {

namespace fs = std::filesystem;
constexpr const char* kStateFile = "checkpoint";

// The TF text-proto string escape for the state file: backslash before '"' and '\\'; newlines
// cannot appear in a checkpoint's file name written by save().
std::string quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

struct CheckpointState {
  std::string model_checkpoint_path;
  std::vector<std::string> all_model_checkpoint_paths;
};

// Parses `key: "value"` lines; keys other than the two kiln writes (TF's timestamps) are skipped.
CheckpointState parse_state(std::istream& is, const std::string& file) {
  CheckpointState st;
  std::string line;
  int lineno = 0;
  while (std::getline(is, line)) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const auto colon = line.find(':');
    const auto bad = [&] {
      return InvalidArgumentError("Checkpoint state file " + file + " line " +
                                  std::to_string(lineno) + " is not `key: \"value\"`: " + line);
    };
    if (colon == std::string::npos) throw bad();
    const std::string key =
        line.substr(line.find_first_not_of(" \t"), colon - line.find_first_not_of(" \t"));
    std::string rest = line.substr(colon + 1);
    rest.erase(0, std::min(rest.find_first_not_of(" \t"), rest.size()));
    while (!rest.empty() && (rest.back() == '\r' || rest.back() == ' ')) rest.pop_back();
    if (key != "model_checkpoint_path" && key != "all_model_checkpoint_paths") continue;
    if (rest.size() < 2 || rest.front() != '"' || rest.back() != '"') throw bad();
    std::string value;
    for (std::size_t i = 1; i + 1 < rest.size(); ++i) {
      if (rest[i] == '\\' && i + 2 < rest.size()) ++i;
      value += rest[i];
    }
    if (key == "model_checkpoint_path")
      st.model_checkpoint_path = value;
    else
      st.all_model_checkpoint_paths.push_back(value);
  }
  return st;
}

// The state file names checkpoints relative to its directory, so the directory can be moved.
void write_state(const fs::path& dir, const std::vector<std::string>& kept,
                 const std::string& newest) {
  std::ostringstream os;
  os << "model_checkpoint_path: " << quote(fs::path(newest).filename().string()) << "\n";
  for (const auto& p : kept)
    if (fs::path(p).parent_path() == fs::path(newest).parent_path())
      os << "all_model_checkpoint_paths: " << quote(fs::path(p).filename().string()) << "\n";
  const std::string text = os.str();
  const std::span<const std::uint8_t> bytes(reinterpret_cast<const std::uint8_t*>(text.data()),
                                            text.size());
  checkpoint::write_file_durably((dir / kStateFile).string(), {bytes});
}

std::span<const std::uint8_t> bytes_of(const Array& a) {
  return visit_dtype(a.dtype(), [&]<class T>() {
    const auto& x = a.as<T>();
    return std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(x.data()),
                                         x.size() * sizeof(T));
  });
}

}  // namespace

Saver::Saver(std::vector<Variable> var_list, SaverOptions options)
    : vars_(std::move(var_list)), options_(options) {
  if (options_.max_to_keep < 0)
    throw ValueError("Saver: max_to_keep must be >= 0 (0 keeps every checkpoint), got " +
                     std::to_string(options_.max_to_keep));
  if (vars_.empty()) vars_ = global_variables();
  if (vars_.empty()) throw ValueError("No variables to save");
  std::set<std::string> names;
  Graph& g = vars_.front().graph();
  for (auto& v : vars_) {
    if (!v.valid()) throw ValueError("Saver: var_list holds a null Variable");
    if (&v.graph() != &g)
      throw ValueError("Saver: variable '" + v.name() + "' belongs to another graph");
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

std::string Saver::save(Session& sess, const std::string& path,
                        std::optional<std::int64_t> global_step) {
  if (&sess.graph() != &vars_.front().graph())
    throw ValueError("Saver::save: the session runs another graph than the saver's variables");
  const std::string file = global_step ? path + "-" + std::to_string(*global_step) : path;
  if (fs::path(file).filename() == kStateFile)
    throw ValueError("Saver::save: " + file +
                     " would overwrite the directory's checkpoint state file");
  // Data-parallel training: every rank holds the same variables, rank 0 writes them.
  if (distributed::size() > 1 && distributed::rank() != 0) return file;
  const std::vector<GraphElement> fetches(vars_.begin(), vars_.end());
  const std::vector<Array> values = sess.run(fetches);

  std::vector<checkpoint::EntryToWrite> entries;
  for (std::size_t i = 0; i < vars_.size(); ++i) {
    const Array& a = values[i];
    entries.push_back({vars_[i].op_name(), a.dtype(), a.shape().dims(), bytes_of(a)});
  }
  checkpoint::write_checkpoint(file, entries);

  // TF1's order: record the new file, write the state naming the kept ones, then delete the rest,
  // so the state file never names a deleted checkpoint.
  std::erase(last_checkpoints_, file);
  last_checkpoints_.push_back(file);
  std::vector<std::string> to_delete;
  const std::size_t keep =
      options_.max_to_keep == 0 ? 1 : static_cast<std::size_t>(options_.max_to_keep);
  while (last_checkpoints_.size() > keep) {
    if (options_.max_to_keep > 0) to_delete.push_back(last_checkpoints_.front());
    last_checkpoints_.erase(last_checkpoints_.begin());
  }
  fs::path dir = fs::path(file).parent_path();
  write_state(dir.empty() ? fs::path(".") : dir, last_checkpoints_, file);
  for (const auto& old : to_delete) {
    std::error_code ec;  // already gone (deleted by hand) is fine
    fs::remove(old, ec);
  }
  return file;
}

void Saver::restore(Session& sess, const std::string& path) const {
  if (&sess.graph() != &vars_.front().graph())
    throw ValueError("Saver::restore: the session runs another graph than the saver's variables");
  const checkpoint::CheckpointFile ckpt = checkpoint::read_checkpoint(path);
  std::map<std::string, const checkpoint::EntryView*> entries;
  for (const auto& e : ckpt.entries) entries[e.name] = &e;

  FeedDict feeds;
  for (std::size_t i = 0; i < vars_.size(); ++i) {
    const Variable& v = vars_[i];
    auto it = entries.find(v.op_name());
    if (it == entries.end())
      throw NotFoundError("Key " + v.op_name() + " not found in checkpoint " + path);
    const checkpoint::EntryView& e = *it->second;
    if (e.dtype != v.dtype())
      throw InvalidArgumentError("Restoring variable '" + v.name() + "' from " + path +
                                 ": the checkpoint holds dtype " + dtype_name(e.dtype) +
                                 ", the variable is " + dtype_name(v.dtype()));
    const Shape shape(e.dims);
    if (!(shape == v.shape()))
      throw InvalidArgumentError("Restoring variable '" + v.name() + "' from " + path +
                                 ": Assign requires shapes of both tensors to match. lhs shape= " +
                                 v.shape().to_string() + " rhs shape= " + shape.to_string());
    // The shape equals the variable's (so it is sane) and the data size was checked by the reader.
    Array a = make_array(e.dtype, std::vector<std::size_t>(e.dims.begin(), e.dims.end()));
    visit_dtype(e.dtype, [&]<class T>() {
      if (!e.data.empty()) std::memcpy(a.mutable_as<T>().data(), e.data.data(), e.data.size());
    });
    feeds.emplace_back(restore_values_[i], std::move(a));
  }
  sess.run(restore_op_, feeds);
}

std::optional<std::string> latest_checkpoint(const std::string& dir) {
  const fs::path state_path = fs::path(dir) / kStateFile;
  std::ifstream is(state_path);
  if (!is) return std::nullopt;
  const CheckpointState st = parse_state(is, state_path.string());
  if (st.model_checkpoint_path.empty()) return std::nullopt;
  fs::path p(st.model_checkpoint_path);
  if (p.is_relative()) p = fs::path(dir) / p;
  std::error_code ec;
  if (!fs::is_regular_file(p, ec)) return std::nullopt;
  return p.string();
}

}  // namespace kiln::train
