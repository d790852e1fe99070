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
// In data-parallel training (distributed/, more than one rank) only rank 0 writes: save() on the
// other ranks returns the path and writes nothing.
//
// Checkpoints hold a CRC32C of every tensor and of their index and are written durably (a .tmp
// file, fsync, rename, fsync of the directory): see optim/saver_format.hpp for the bytes. Files of
// format version 1 (kiln before checksums) still restore.
//
// Like TF1, each save records its file in a text state file named "checkpoint" in the file's
// directory (`model_checkpoint_path: "model.ckpt-7"`, then one `all_model_checkpoint_paths` line
// per kept checkpoint, oldest first; names relative to that directory), and deletes the files of
// this Saver's checkpoints beyond the newest `max_to_keep`. `latest_checkpoint(dir)` reads it back.
//
// Errors: save/restore of a variable of another graph: ValueError; an unreadable or unwritable
// path: NotFoundError naming it; a file that is not a kiln checkpoint, is truncated, or whose
// checksums do not match: InvalidArgumentError naming the path (and the tensor whose data is
// corrupt); a variable absent from the file: NotFoundError "Key dense/kernel not found in
// checkpoint <path>"; a dtype or shape that differs: InvalidArgumentError naming the variable and
// both dtypes/shapes. Saving an uninitialized variable raises the Session's FailedPreconditionError
// naming it. Every check of a restore runs before any variable is assigned. A Saver is not
// thread-safe.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "framework/graph.hpp"

namespace kiln {
class Session;
}

namespace kiln::train {

struct SaverOptions {
  /// How many of this Saver's most recent checkpoints to keep (TF1's max_to_keep): saving one more
  /// deletes the oldest. 0 keeps every file (the state file then lists only the newest).
  int max_to_keep = 5;
};

class Saver {
 public:
  /// `var_list` empty: the GLOBAL_VARIABLES of the default graph at construction (the model's
  /// variables, the optimizer's slots and non-slot variables, the global step). ValueError
  /// "No variables to save" when there are none, for two variables with the same op name, or for
  /// a negative max_to_keep.
  explicit Saver(std::vector<Variable> var_list = {}, SaverOptions options = {});

  /// Writes the checkpoint (to `path`, or `path-<global_step>` when given) and returns its path.
  /// The file is written to "<path>.tmp" and renamed, so a crash never leaves a partial checkpoint;
  /// on failure the .tmp is removed. Then updates the directory's "checkpoint" state file and
  /// deletes this Saver's checkpoints beyond max_to_keep. ValueError for a file named "checkpoint".
  std::string save(Session& sess, const std::string& path,
                   std::optional<std::int64_t> global_step = {});
  /// Assigns every variable of the list from the checkpoint, in one run. Extra entries are ignored.
  void restore(Session& sess, const std::string& path) const;

  const std::vector<Variable>& var_list() const { return vars_; }
  /// The checkpoints this Saver keeps, oldest first (TF1's `last_checkpoints`).
  const std::vector<std::string>& last_checkpoints() const { return last_checkpoints_; }

 private:
  std::vector<Variable> vars_;
  SaverOptions options_;
  std::vector<std::string> last_checkpoints_;
  std::vector<Tensor> restore_values_;  // one placeholder per variable
  Operation restore_op_;
};

/// TF1's `tf.train.latest_checkpoint`: the newest checkpoint named by "<dir>/checkpoint", or
/// nullopt when there is no state file or the checkpoint it names no longer exists. A state file
/// that is not in the format above: InvalidArgumentError naming it.
std::optional<std::string> latest_checkpoint(const std::string& dir);

}  // namespace kiln::train
