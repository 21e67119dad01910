# The training state of one run and its mini-batch step loop (see _stepper.pyx).

from cmlp._engine cimport NetLayout


cdef class BatchStepper:
    # What it trains and on what (fixed for the stepper's life).
    cdef readonly NetLayout layout
    cdef readonly object parameters     # (n_params) the network's flat buffer, updated in place
    cdef readonly object gradients      # (n_params) filled by every batch unless SGD is fused
    cdef readonly object X              # (n, sizes[0])
    cdef readonly object labels         # (n) int32 for softmax, else (0)
    cdef readonly object targets        # (n, k) for identity/sigmoid, else (0, k)
    cdef readonly object weights        # (n) sample weights, or (0)
    cdef readonly Py_ssize_t batch_size
    # Scratch, allocated once and reused by every batch.
    cdef object work                    # (batch, work_per_row)
    cdef object batch_X                 # (batch, sizes[0])
    cdef object batch_labels            # (batch) or (0)
    cdef object batch_targets           # (batch, k) or (0, k)
    cdef object batch_weights           # (batch) or (0)
    # The optimizer: kind, hyperparameters, state buffers (n_params or 0).
    cdef public int optimizer
    cdef public double momentum, beta1, beta2, eps, weight_decay
    # When set, a batch's L2 coefficient is weight_decay / (the batch's weight
    # total): scikit-learn's alpha, which regularizes the summed loss.
    cdef public bint decay_per_sample
    cdef readonly object state1, state2
    # Counters, advanced batch by batch (consistent with the parameters even
    # when a run stops early): optimizer steps (Adam's t) and batches trained
    # (the dropout masks' counter).
    cdef public long long step
    cdef public unsigned long long batches_done
    cdef public unsigned long long dropout_key
    # Called with the GIL as hook(gradients, batch_weight) between a batch's
    # gradients and its optimizer step, for every batch (also one whose loss
    # is non-finite, which is then not applied); None for no hook.
    cdef public object gradient_hook
    # Set before each hook call to the batch's loss sum and weight total. A
    # hook that reduces over processes may overwrite them with the global
    # figures: a non-finite hook_loss stops the run at this batch (on every
    # process alike), and per-sample decay divides by hook_weight.
    cdef public double hook_loss, hook_weight
    # Likewise the batch's row count (the global batch's, after a reducing
    # hook): the sklearn_loss record weights each batch by it.
    cdef public double hook_rows
    # Multiplies each batch's gradient, applied to dL/dz_out (no pass over
    # the buffer): a data-parallel rank's share of the global batch mean.
    cdef public double gradient_scale
    # scikit-learn's loss record: when set, each batch adds m * (its weighted
    # mean loss * loss_scale + weight_decay / 2 * ||W||^2 / its weight
    # total, at the weights before its step) to loss_sum instead of its
    # weighted loss sum (MLP's loss_curve_; loss_scale 1/k averages MSE
    # over the k outputs as scikit-learn's squared_loss does).
    cdef public bint sklearn_loss
    cdef public double loss_scale
    # Worker threads for a dense batch (cmlp._pool; each batch uses
    # threads_for(threads, rows, n_params) of them), and the deltas of a
    # split batch (batch, act_width), allocated when threads > 1.
    cdef public int threads
    cdef object deltas
    # The latest run's progress: whole batches done, as far as they went.
    cdef readonly double loss_sum
    cdef readonly Py_ssize_t n_correct, rows_done
