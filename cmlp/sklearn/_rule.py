"""scikit-learn's per-epoch logic for the stochastic solvers, as cmlp callbacks.

Design
------
* `SklearnRule` runs at the end of each epoch what scikit-learn's
  ``_fit_stochastic`` runs there: the loss curve (with the L2 term), the
  validation score (NaN once the outputs are non-finite), the
  tol / n_iter_no_change stopping rule (NaN never counts as "no
  improvement", as in scikit-learn), the adaptive learning rate, and the
  best parameters for early stopping.
* `InverseScalingBySamples` is 'invscaling': scikit-learn's SGD starts each
  fit at learning_rate_init (a new optimizer per fit call) and sets
  learning_rate_init / (t_ + 1) ** power_t after every epoch; a
  partial_fit keeps the optimizer, so it starts where the last one left.
"""
from __future__ import annotations

import numpy as np

from cmlp.callbacks import Callback
from cmlp.schedules import Schedule


class InverseScalingBySamples(Schedule):
    """The rate of epoch e of this call: lr at e = 0 if the optimizer is new,
    else lr / (t + 1) ** power_t, t the samples seen before the epoch."""

    def __init__(self, rows_per_epoch, power_t, samples_before=0, fresh=True):
        self.rows, self.power_t, self.before = rows_per_epoch, power_t, samples_before
        self.fresh = fresh

    def __call__(self, epoch, epochs, base_lr):
        t = self.before + epoch * self.rows
        if t == 0 or (epoch == 0 and self.fresh):
            return base_lr
        return base_lr / (t + 1) ** self.power_t

    def config(self):
        return {"name": "constant"}


class SklearnRule(Callback):
    """End of epoch: scikit-learn's loss record, then `end_epoch`.

    The C stepper records scikit-learn's loss (each batch's mean loss with
    the L2 term of the weights it started from, times its rows;
    BatchStepper.sklearn_loss), in a data-parallel run too (each rank adds
    its part of the global batch's)."""

    def __init__(self, estimator, n_rows, validation):
        self.est, self.n_rows = estimator, n_rows
        self.validation = validation

    def on_train_begin(self, run):
        stepper, net = run.stepper, run.network
        stepper.sklearn_loss = True
        stepper.loss_scale = 1.0 / net.n_outputs if net.output == "identity" else 1.0

    def on_epoch_end(self, run, record):
        # The stepper's sum over the rows, divided as scikit-learn divides it.
        loss = record["loss"] * run.epoch_weight / self.n_rows
        return end_epoch(self.est, loss, run.optimizer, self.validation, self.n_rows)


def end_epoch(est, loss, optimizer, validation, n_rows):
    """scikit-learn's end of an epoch; True to stop."""
    est.loss_ = loss
    est.loss_curve_.append(loss)
    est.n_iter_ += 1
    est.t_ += n_rows
    if est.verbose:
        print(f"Iteration {est.n_iter_}, loss = {loss:.8f}")
    if validation is not None:
        score = est._score_network(*validation)
        est.validation_scores_.append(score)
        if est.verbose:
            print(f"Validation score: {score:f}")
        if score < est.best_validation_score_ + est.tol:
            est._no_improvement_count += 1
        else:
            est._no_improvement_count = 0
        if score > est.best_validation_score_:
            est.best_validation_score_ = score
            est._best_parameters = est.network_.parameters.copy()
    else:
        if loss > est.best_loss_ - est.tol:
            est._no_improvement_count += 1
        else:
            est._no_improvement_count = 0
        est.best_loss_ = min(est.best_loss_, loss)
    if est._no_improvement_count > est.n_iter_no_change:
        what = "Validation score" if validation is not None else "Training loss"
        message = (f"{what} did not improve more than tol={est.tol:f} for "
                   f"{est.n_iter_no_change} consecutive epochs.")
        if est.solver == "sgd" and est.learning_rate == "adaptive" \
                and optimizer.lr > 1e-6:
            optimizer.lr /= 5.0
            est._no_improvement_count = 0
            if est.verbose:
                print(f"{message} Setting learning rate to {optimizer.lr:f}")
        else:
            if est.verbose:
                print(f"{message} Stopping.")
            est._converged = True
            return True
    return False


def record_divergence(est, epochs, n_rows):
    """Under early stopping, scikit-learn trains on through a divergence:
    every later epoch's loss and validation score is NaN (which never
    counts as no improvement), then the best parameters come back. cmlp
    stopped at the first non-finite loss, with finite parameters; the
    record it leaves is the one scikit-learn's run ends with."""
    for _ in range(epochs - est.n_iter_):
        est.n_iter_ += 1
        est.t_ += n_rows
        est.loss_ = np.nan
        est.loss_curve_.append(np.nan)
        est.validation_scores_.append(np.nan)
    est._no_improvement_count = 0


class OptimizerState:
    """The learning rate as scikit-learn's optimizer objects hold it."""

    def __init__(self, estimator):
        self.estimator = estimator

    @property
    def learning_rate(self):
        est, opt = self.estimator, self.estimator.network_.optimizer
        if est.solver == "adam":       # the last step's lr_t
            t = max(opt.step, 1)
            return opt.lr * np.sqrt(1 - opt.beta2 ** t) / (1 - opt.beta1 ** t)
        if est.learning_rate == "invscaling" and est.t_:
            return opt.lr / (est.t_ + 1) ** est.power_t
        return opt.lr
