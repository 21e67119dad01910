"""The numpydoc text both estimators share (one copy, joined into each
class docstring)."""
import textwrap


def indented(block):
    """A shared block at the class docstring's indentation (4 spaces), so
    inspect.cleandoc and numpydoc read the docstring as one."""
    return textwrap.indent(block, "    ")


PARAMETERS = """\
hidden_layer_sizes : array-like of shape (n_layers - 2,), default=(100,)
    The ith element is the number of neurons in the ith hidden layer.
activation : {'identity', 'logistic', 'tanh', 'relu', 'leaky_relu', 'gelu'}, default='relu'
    Activation of the hidden layers ('leaky_relu' and 'gelu' are cmlp's).
solver : {'lbfgs', 'sgd', 'adam'}, default='adam'
    'lbfgs': scipy's L-BFGS-B over the whole data set (best on small data);
    'sgd': mini-batch SGD with (Nesterov) momentum; 'adam': Adam.
alpha : float, default=0.0001
    L2 coefficient of the summed loss.
batch_size : int or 'auto', default='auto'
    Rows per mini-batch, 'auto' = min(200, n_samples). Not used by lbfgs.
learning_rate : {'constant', 'invscaling', 'adaptive'}, default='constant'
    The sgd schedule: constant; learning_rate_init / (t + 1) ** power_t
    after each epoch, t the samples seen; or divided by 5 each time
    n_iter_no_change epochs bring no improvement of tol.
learning_rate_init : float, default=0.001
    The initial learning rate (sgd, adam).
power_t : float, default=0.5
    Exponent of 'invscaling'.
max_iter : int, default=200
    Epochs (sgd, adam) or iterations (lbfgs) at most.
shuffle : bool, default=True
    Reshuffle the rows each epoch (sgd, adam).
random_state : int, RandomState instance or None, default=None
    The initial weights, the early-stopping split and the shuffles, drawn
    as scikit-learn draws them: the same random_state gives the same model.
tol : float, default=1e-4
    Improvement below which an epoch counts as none (sgd, adam); the
    projected-gradient tolerance (lbfgs).
verbose : bool, default=False
    Print the loss after each epoch or iteration.
warm_start : bool, default=False
    fit continues from the fitted parameters instead of starting anew.
momentum : float, default=0.9
    Momentum of sgd.
nesterovs_momentum : bool, default=True
    Nesterov's momentum (sgd with momentum > 0).
early_stopping : bool, default=False
    Hold out validation_fraction of the rows and stop when their score
    stops improving; the best parameters are kept (sgd, adam).
validation_fraction : float, default=0.1
    The share held out for early stopping.
beta_1, beta_2 : float, default=0.9, 0.999
    Adam's moment decay rates.
epsilon : float, default=1e-8
    Adam's numerical stability term.
n_iter_no_change : int or np.inf, default=10
    Epochs without tol improvement before stopping (or a learning-rate cut
    for 'adaptive'); np.inf never stops on it.
max_fun : int, default=15000
    Loss evaluations at most (lbfgs).
dtype : {None, 'float32', 'float64'}, default=None
    cmlp: the dtype of the parameters and all computation. None follows
    scikit-learn (float32 input in float32, anything else in float64);
    'float32' is about twice as fast on float64 data.
dropout : float, default=0.0
    cmlp: inverted dropout after each hidden layer during training (sgd, adam).
init : {'sklearn', 'he'}, default='sklearn'
    cmlp: 'sklearn' draws the initial parameters as scikit-learn does
    (Glorot uniform, biases too); 'he' is cmlp's own (He normal for the
    ReLU family, Glorot otherwise, biases at zero).
threads : int or None, default=None
    cmlp: worker threads that split each batch's rows (sgd, adam) and the
    rows of predict; None uses the cores this process may, capped by BLAS's
    thread count (threadpoolctl, joblib's workers in GridSearchCV(n_jobs=k),
    OMP_NUM_THREADS). Results depend on the count, not on scheduling."""

ATTRIBUTES = """\
loss_ : float
    The loss at the end of fitting (with the L2 term).
best_loss_ : float or None
    The lowest training loss (None under early stopping; sgd, adam).
loss_curve_ : list of float
    The loss after each epoch (sgd, adam) or iteration (lbfgs).
validation_scores_ : list of float or None
    The validation score after each epoch, with early stopping.
best_validation_score_ : float or None
    The best of ``validation_scores_``, with early stopping.
t_ : int
    Training samples seen.
coefs_ : list of ndarray
    W of each layer, shape (n_in, n_out) (views into the parameters of ``network_``).
intercepts_ : list of ndarray
    b of each layer, shape (n_out,).
n_features_in_ : int
    Number of features seen during fit.
feature_names_in_ : ndarray of shape (``n_features_in_``,)
    Names of the features seen during fit, if X had string column names.
n_iter_ : int
    Epochs (sgd, adam) or iterations (lbfgs) of the last fit.
n_layers_ : int
    Number of layers, input and output included.
n_outputs_ : int
    Number of outputs.
out_activation_ : str
    The output activation.
network_ : cmlp.Network
    The fitted network (its forward pass, ONNX export, save/load)."""
