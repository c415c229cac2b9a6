"""PHASE-1 PROTOTYPE of the fine-tuning schedule, outside the trainer (issue #8), kept as the
measured reference for the trainer integration; phase 2 replaces it with
--freeze_backbone_epochs/--backbone_lr_scale/--freeze_bn in mobilenet_tf.train.

Head phase: every layer but conv_preds trainable=False (BN in inference mode). Whole-network
phase: BN layers non-trainable (--freeze_bn 1), the rest trainable, two optimizers (classifier
at the schedule, backbone at --backbone_lr_scale x it). --single 1: one cosine schedule over
both phases (the design proposed for the trainer). Prints one JSON line per epoch
(held-out top-1, training wall and CPU seconds).

  python experiments/finetune_prototype.py --data=/tmp/ft/n100 --single 1 --head_epochs 2 \\
      --ft_epochs 6 --lr 0.01 --backbone_lr_scale 0.03

Data (/tmp/ft/n100): the shared tarball extracted to /tmp/ft; per class, files sorted,
numpy.random.default_rng(123).permutation: the first 100 symlinked into
n100/train/<wnid>, the next 100 into n100/validation/<wnid>.
"""
import argparse, json, time, h5py, numpy as np
p = argparse.ArgumentParser()
p.add_argument("--data", default="/tmp/ft/n100")
p.add_argument("--train_split", default="train"); p.add_argument("--eval_split", default="validation")
p.add_argument("--weights", default="/work/shared/data/pretrained/mobilenet_v1_0.75_192_imagenet.weights.h5")
p.add_argument("--alpha", type=float, default=0.75); p.add_argument("--res", type=int, default=192)
p.add_argument("--head_epochs", type=float, default=1); p.add_argument("--ft_epochs", type=float, default=2)
p.add_argument("--opt", default="adam"); p.add_argument("--lr", type=float, default=1e-3)
p.add_argument("--ft_lr", type=float, default=None)
p.add_argument("--backbone_lr_scale", type=float, default=0.1)
p.add_argument("--freeze_bn", type=int, default=1); p.add_argument("--min_area", type=float, default=0.25)
p.add_argument("--ls", type=float, default=0.1); p.add_argument("--dropout", type=float, default=0.2)
p.add_argument("--batch", type=int, default=32); p.add_argument("--cosine", type=int, default=1)
p.add_argument("--eval_every", type=int, default=1); p.add_argument("--scratch", type=int, default=0)
p.add_argument("--single", type=int, default=0); p.add_argument("--crop", type=float, default=0.875); p.add_argument("--out", default=None); p.add_argument("--head_zero", type=int, default=1)
a = p.parse_args()
import tensorflow as tf, keras
from mobilenet_tf.model.builder import mobilenet_v1
from mobilenet_tf import data
t_start, c_start = time.time(), time.process_time()
cfg = data.DataConfig(dataset=f"folder:{a.data}", image_size=a.res, min_area=a.min_area, seed=0, crop_fraction=a.crop)
tr = data.build_input(cfg, split=a.train_split, training=True, global_batch_size=a.batch)
ev = data.build_input(cfg, split=a.eval_split, training=False, global_batch_size=64, class_names=tr.class_names)
nc = len(tr.class_names); spe = tr.num_examples // a.batch
model = mobilenet_v1((a.res, a.res, 3), alpha=a.alpha, num_classes=nc, dropout=a.dropout, classifier_activation=None)
if not a.scratch:
    vals = {}
    with h5py.File(a.weights, "r") as f:
        def visit(n, o):
            if isinstance(o, h5py.Group) and n.endswith("/vars") and "name" in o.attrs:
                vals[o.attrs["name"]] = [np.array(o[str(i)]) for i in range(len(o))]
        f.visititems(visit)
    loaded = 0
    for l in model.layers:
        w = vals.get(l.name)
        if w and l.weights and [x.shape for x in w] == [tuple(v.shape) for v in l.weights]:
            l.set_weights(w); loaded += 1
    print("loaded layers", loaded)
    if a.head_zero:
        for v in model.get_layer("conv_preds").weights: v.assign(tf.zeros_like(v))
head = [model.get_layer("conv_preds")]
backbone = [l for l in model.layers if l.weights and l.name != "conv_preds"]
is_bn = lambda l: isinstance(l, keras.layers.BatchNormalization)
class Sched(keras.optimizers.schedules.LearningRateSchedule):
    def __init__(self, lr, total, offset=0, scale=1.0):
        self.lr, self.total, self.offset, self.scale = lr, total, offset, scale
    def __call__(self, step):
        t = tf.minimum(tf.cast(step, tf.float32) + self.offset, self.total) / self.total
        return self.scale * self.lr * 0.5 * (1 + tf.cos(np.pi * t))
def sched(lr, steps):
    return keras.optimizers.schedules.CosineDecay(lr, steps) if a.cosine else lr
def make_opt(lr):
    if a.opt == "adam": return keras.optimizers.Adam(lr)
    if a.opt == "sgd": return keras.optimizers.SGD(lr, momentum=0.9, nesterov=True)
    if a.opt == "rmsprop": return keras.optimizers.RMSprop(lr, rho=0.9, momentum=0.9, epsilon=1.0)
ce = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=a.ls)
def make_step(groups):
    allv = [v for vs, _ in groups for v in vs]
    @tf.function
    def step(x, y):
        with tf.GradientTape() as t:
            logits = model(x, training=True)
            loss = ce(y, logits)
        g = t.gradient(loss, allv); k = 0
        for vs, opt in groups:
            opt.apply_gradients(zip(g[k:k + len(vs)], vs)); k += len(vs)
        return loss, tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, -1), tf.argmax(y, -1)), tf.float32))
    return step
@tf.function
def ev_step(x):
    return tf.argmax(model(x, training=False), -1, output_type=tf.int32)
def evaluate():
    c = n = 0
    for x, y in ev.input_fn(None):
        c += int(tf.reduce_sum(tf.cast(tf.equal(ev_step(x), y), tf.int32))); n += int(tf.shape(y)[0])
    return c / n
it = iter(tr.input_fn(None))
log = []; train_wall = 0.0; train_cpu = 0.0
def run_phase(name, epochs, groups):
    global train_wall, train_cpu
    steps = int(round(epochs * spe)); step = make_step(groups); done = 0
    while done < steps:
        n = min(spe, steps - done) if a.eval_every else steps - done
        t0, c0 = time.time(), time.process_time(); ls = []; acc = []
        for _ in range(n):
            l, ac = step(*next(it)); ls.append(float(l)); acc.append(float(ac))
        train_wall += time.time() - t0; train_cpu += time.process_time() - c0; done += n
        top1 = evaluate() if a.eval_every else None
        r = dict(phase=name, step=done, epoch=round(done / spe, 2), loss=round(np.mean(ls), 4), train_acc=round(np.mean(acc), 4),
                 val_top1=top1, train_wall=round(train_wall, 1), train_cpu=round(train_cpu, 1))
        print(json.dumps(r), flush=True); log.append(r)
if not a.scratch:
    print("pretrained val top1 before training (random head):", evaluate())
    for l in model.layers: l.trainable = l.name == "conv_preds"
    sm, snt = [w.numpy().copy() for l in backbone for w in l.weights], None
    total = int(round((a.head_epochs + a.ft_epochs) * spe)); hsteps = int(round(a.head_epochs * spe))
    head_opt = make_opt(Sched(a.lr, total) if a.single else sched(a.lr, int(a.head_epochs * spe)))
    if a.head_epochs > 0:
        run_phase("head", a.head_epochs, [(head[0].trainable_variables, head_opt)])
        after = [w.numpy() for l in backbone for w in l.weights]
        print("backbone identical after head phase:", all(np.array_equal(x, y) for x, y in zip(sm, after)))
for l in model.layers:
    l.trainable = not (is_bn(l) and a.freeze_bn and not a.scratch)
ft_lr = a.ft_lr or a.lr
ft_steps = int(a.ft_epochs * spe)
bb_vars = [v for l in backbone for v in l.trainable_variables]
if a.single and not a.scratch:
    groups = [(head[0].trainable_variables, head_opt), (bb_vars, make_opt(Sched(a.lr, total, hsteps, a.backbone_lr_scale)))]
else:
    groups = [(head[0].trainable_variables, make_opt(sched(ft_lr, ft_steps)))]
    if a.backbone_lr_scale > 0 and bb_vars:
        groups.append((bb_vars, make_opt(sched(ft_lr * a.backbone_lr_scale, ft_steps))))
if a.ft_epochs > 0:
    run_phase("full", a.ft_epochs, groups)
if a.crop != 1.0:
    ev = data.build_input(data.DataConfig(dataset=f"folder:{a.data}", image_size=a.res, crop_fraction=1.0), split=a.eval_split, training=False, global_batch_size=64, class_names=tr.class_names)
    print("val top1 at crop 1.0:", evaluate())
print("FINAL", json.dumps(dict(args=vars(a), final=log[-1] if log else None, total_wall=round(time.time() - t_start, 1))))
if a.out:
    model.save_weights(a.out.replace(".json", ".weights.h5"))
    json.dump(dict(args=vars(a), log=log), open(a.out, "w"))
