#pragma once
// train::Saver: writes the values of variables to a checkpoint file and reads them back.
//
//   train::Saver saver;                        // every global variable existing now
//   saver.save(sess, "/tmp/model.ckpt");
//   ...
//   saver.restore(sess, "/tmp/model.ckpt");   // assigns every saved variable
//
// Create the Saver after the model AND the optimizer: variables created later (optimizer slots,
// global step) are not in its list. Entries are keyed by the variable's op name ("dense/kernel"),
// so a graph rebuilt by the same code restores a checkpoint written by another process.
//
// File format (version 1), all integers little-endian, no padding:
//   magic       8 bytes  "KILNCKPT"
//   version     u32      1
//   count       u32      number of entries
//   per entry, in var_list order:
//     name_len  u32, name bytes (UTF-8, the variable's op name, no ":0")
//     dtype     u8       0 float32, 1 float64, 2 int32, 3 int64, 4 bool (kiln::DType's values)
//     rank      u32, then rank x i64 dimensions
//     nbytes    u64, then the elements in row-major order, little-endian (bool: one byte 0/1)
//
// Errors: save/restore of a variable of another graph: ValueError; an unreadable or unwritable path:
// NotFoundError naming it; a file that is not a kiln checkpoint or is truncated: InvalidArgumentError;
// a variable absent from the file: NotFoundError "Key dense/kernel not found in checkpoint <path>";
// a dtype or shape that differs: InvalidArgumentError naming the variable and both dtypes/shapes.
// Saving an uninitialized variable raises the Session's FailedPreconditionError naming it.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "framework/graph.hpp"

namespace kiln {
class Session;
}

namespace kiln::train {

class Saver {
 public:
  /// `var_list` empty: the GLOBAL_VARIABLES of the default graph at construction. ValueError
  /// "No variables to save" when there are none, or for two variables with the same op name.
  explicit Saver(std::vector<Variable> var_list = {});

  /// Writes the checkpoint (to `path`, or `path-<global_step>` when given) and returns its path.
  /// The file is written to "<path>.tmp" and renamed, so a crash never leaves a partial checkpoint.
  std::string save(Session& sess, const std::string& path, std::optional<std::int64_t> global_step = {}) const;
  /// Assigns every variable of the list from the checkpoint, in one run. Extra entries are ignored.
  void restore(Session& sess, const std::string& path) const;

  const std::vector<Variable>& var_list() const { return vars_; }

 private:
  std::vector<Variable> vars_;
  std::vector<Tensor> restore_values_;  // one placeholder per variable
  Operation restore_op_;
};

}  // namespace kiln::train
