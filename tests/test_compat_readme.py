"""torchunlearn's README, run against funlearn.compat with only the import lines changed.

The snippets below are copied verbatim from torchunlearn's README (GitHub HEAD, 0.1.1). The test
rewrites exactly two things: the import lines (``torchunlearn`` -> ``funlearn.compat.torchunlearn``)
and the dataset (CIFAR-10 and its statistics -> the offline Fashion-MNIST files, with a LeNet instead
of a ResNet18 for a 1-channel 28x28 input). Names the README leaves undefined (``model``,
``merged_loader``, ``EPOCH``, ``rho``, ``gamma``) and its pre-trained ``save_dict.pth`` are provided
by the test, and ``UnlearnDataSetup`` is patched to a fixed 1500/600-sample subset to keep it fast.
"""

from __future__ import annotations

import functools

import pytest
import torch

from funlearn.compat.data import UnlearnDataSetup

from compat_common import TEST_SUBSET, TRAIN_SUBSET, pretrained

pytestmark = pytest.mark.slow

INTRO = '''
import torchunlearn
from torchunlearn.unlearn.trainers.finetune import Finetune

# Wrap your model
rmodel = torchunlearn.RobModel(model, n_classes=10, 
                               normalization_used={'mean': [0.5], 'std': [0.5]})

# Setup data loaders (Retain, Forget, Test)
setup = torchunlearn.utils.data.UnlearnDataSetup(data_name="CIFAR10", 
                                                  n_classes=10, 
                                                  mean=[0.4914, 0.4822, 0.4465], 
                                                  std=[0.2023, 0.1994, 0.2010])
train_loaders, test_loaders = setup.get_loaders_for_rand(batch_size=128, 
                                                          ratio=0.1, 
                                                          stratified=True)

# Load your model
rmodel.load_dict('save_dict.pth')

# Start unlearning
trainer = Finetune(rmodel)
trainer.setup(optimizer="SGD(lr=0.01, momentum=0.9, weight_decay=5e-4)", 
              n_epochs=5)
trainer.fit(train_loaders=train_loaders['Retain'], n_epochs=5, 
            save_path="./models/unlearned")
'''

BASIC_USAGE = '''
import torch
import torchunlearn
from torchunlearn.utils.data import UnlearnDataSetup, MergedLoaders

# Configuration
MODEL_NAME = "ResNet18"
DATA_NAME = "CIFAR10"
MEAN = [0.4914, 0.4822, 0.4465]
STD = [0.2023, 0.1994, 0.2010]
N_CLASSES = 10

# Load model
model = torchunlearn.utils.load_model(model_name=MODEL_NAME, n_classes=N_CLASSES)
rmodel = torchunlearn.RobModel(model, n_classes=N_CLASSES, 
                               normalization_used={'mean': MEAN, 'std': STD})

# Setup data
setup = UnlearnDataSetup(data_name=DATA_NAME, n_classes=N_CLASSES, 
                         mean=MEAN, std=STD)
'''

RANDOM = '''
train_loaders, test_loaders = setup.get_loaders_for_rand(
    batch_size=128, 
    ratio=0.1,           # 10% of data to forget
    stratified=True,     # Maintain class distribution
    seed=42
)
'''

CLASSWISE = '''
train_loaders, test_loaders = setup.get_loaders_for_classwise(
    batch_size=128, 
    omit_label=1,       # Forget class 1
    train_shuffle_and_transform=True
)
'''

FINETUNE = '''
from torchunlearn.unlearn.trainers.finetune import Finetune

trainer = Finetune(rmodel)
trainer.setup(optimizer="SGD(lr=0.01, momentum=0.9, weight_decay=5e-4)", 
              n_epochs=5)
trainer.fit(train_loaders=merged_loader, n_epochs=5)
'''

NEGGRAD = '''
from torchunlearn.unlearn.trainers.neggrad import NegGrad

trainer = NegGrad(rmodel, retain_lambda=0.5)  # Balance forget/retain
trainer.setup(optimizer="SGD(lr=0.01, momentum=0.9, weight_decay=5e-4)", 
              n_epochs=5)
trainer.fit(train_loaders=merged_loader, n_epochs=5)
'''

RANDOMLABEL = '''
from torchunlearn.unlearn.trainers.randomlabel import RandomLabel

trainer = RandomLabel(rmodel, retain_lambda=0.5)
trainer.setup(optimizer="SGD(lr=0.01, momentum=0.9, weight_decay=5e-4)", 
              n_epochs=5)
trainer.fit(train_loaders=merged_loader, n_epochs=5)
'''

L1SPARSE = '''
from torchunlearn.unlearn.trainers.l1sparse import L1Sparse

trainer = L1Sparse(rmodel, gamma=1e-5)  # L1 regularization strength
trainer.setup(optimizer="SGD(lr=0.01, momentum=0.9, weight_decay=5e-4)", 
              n_epochs=5)
trainer.fit(train_loaders=merged_loader, n_epochs=5)
'''

UAM = '''
from torchunlearn.unlearn.trainers.standard import Standard

trainer = Standard(rmodel)
cosine = True # or False
if cosine: 
  schdeuler = "Cosine"
  cosine_total_step = EPOCH*len(merged_loader)
else:
  schdeuler = None
  cosine_total_step = None
trainer.setup(optimizer=f"SGD(lr=0.01, momentum=0.9, weight_decay=5e-4)", 
              scheduler=None, scheduler_type=None,
              minimizer=f"UAM(rho={rho}, cosine_total_step={cosine_total_step}, gamma={gamma})", 
              n_epochs=EPOCH)

trainer.fit(train_loaders=merged_loader, n_epochs=5)
'''

FISHER = '''
from torchunlearn.unlearn.nontrainers.fisherforget import FisherForget

unlearner = FisherForget(rmodel)
unlearner.fit(train_loaders, 
              alphas=[1e-9, 1e-8, 1e-7, 1e-6], 
              repeat=3,
              save_path="./models/fisher")
'''

INFLUENCE = '''
from torchunlearn.unlearn.nontrainers.influence import Influence

unlearner = Influence(rmodel)
unlearner.fit(train_loaders, 
              alphas=[1e-9, 1e-8, 1e-7, 1e-6], 
              repeat=3,
              save_path="./models/influence")
'''

EVALUATION = '''
# Setup evaluation loaders
loaders_with_flags = {
    "(R)": train_loaders['Retain'],    # Should maintain high accuracy
    "(F)": train_loaders['Forget'],    # Should decrease accuracy (forgetting)
    "(Te)": test_loaders['Test'],      # Should maintain generalization
}

trainer.record_rob(loaders_with_flags, n_limit=1000)

# Train with automatic evaluation
trainer.fit(
    train_loaders=merged_loader, 
    n_epochs=5,
    save_path="./models/unlearned", 
    save_best={"Clean(R)": "HB", "Clean(F)": "LBO"},  # High retain, Low forget
    save_overwrite=True, 
    record_type="Epoch"
)
'''

# The "Unified Interface" template, its placeholders filled in.
UNIFIED = '''
UnlearningMethod, method_params, test_loader = NegGrad, {"retain_lambda": 0.9}, test_loaders["Test"]
# Initialize
trainer = UnlearningMethod(rmodel, **method_params)

# Setup training
trainer.setup(optimizer="SGD(lr=0.01, momentum=0.9)", scheduler="Cosine", n_epochs=2)

# Train (unlearn)
trainer.fit(train_loaders=merged_loader, n_epochs=2, save_path="./models/unified")

# Evaluate
accuracy = rmodel.eval_accuracy(data_loader=test_loader)
'''

FASHION = [
    ('data_name="CIFAR10"', 'data_name="FashionMNIST"'),
    ('DATA_NAME = "CIFAR10"', 'DATA_NAME = "FashionMNIST"'),
    ('MODEL_NAME = "ResNet18"', 'MODEL_NAME = "LeNet"'),
    ("[0.4914, 0.4822, 0.4465]", "[0.2860]"),
    ("[0.2023, 0.1994, 0.2010]", "[0.3530]"),
]


def to_compat(code: str, offline: bool = True) -> str:
    """Change the import lines (and, offline, the dataset): the only edits a user makes."""
    code = code.replace("import torchunlearn\n", "import funlearn.compat.torchunlearn as torchunlearn\n")
    code = code.replace("from torchunlearn.", "from funlearn.compat.torchunlearn.")
    for old, new in FASHION if offline else ():
        code = code.replace(old, new)
    assert "torchunlearn." not in code.replace("funlearn.compat.torchunlearn.", "").replace("= torchunlearn.", "")
    return code


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A fresh directory with the pre-trained model file, and UnlearnDataSetup reading a fixed subset."""
    monkeypatch.chdir(tmp_path)
    pretrained().save_dict("save_dict.pth")
    subset_init = functools.partialmethod(UnlearnDataSetup.__init__, train_subset=TRAIN_SUBSET, test_subset=TEST_SUBSET)
    monkeypatch.setattr(UnlearnDataSetup, "__init__", subset_init)
    return tmp_path


def test_every_readme_snippet_runs_in_order(workdir, capsys):
    from funlearn.compat.robmodel import load_model

    ns: dict = {"model": load_model("LeNet", 10)}
    exec(to_compat(INTRO), ns)  # noqa: S102 - torchunlearn's README, the point of the test
    assert (workdir / "models" / "unlearned" / "last.pth").is_file()
    for snippet in (BASIC_USAGE, RANDOM, CLASSWISE):
        exec(to_compat(snippet), ns)  # noqa: S102
    assert set(ns["train_loaders"]) == {"Retain", "Forget"} and set(ns["test_loaders"]) == {"Test", "Test(forget)"}
    ns["rmodel"].load_dict("save_dict.pth")
    ns["merged_loader"] = ns["MergedLoaders"](ns["train_loaders"])
    ns.update(EPOCH=1, rho=0.5, gamma=1.0)
    for snippet in (FINETUNE, NEGGRAD, RANDOMLABEL, L1SPARSE, UAM, UNIFIED):
        exec(to_compat(snippet), ns)  # noqa: S102
        assert ns["trainer"].result.completed
    assert 0.0 <= ns["accuracy"] <= 100.0
    for snippet in (FISHER, INFLUENCE):
        exec(to_compat(snippet), ns)  # noqa: S102
    assert (workdir / "models" / "fisher" / "best.pth").is_file()
    exec(to_compat(EVALUATION), ns)  # noqa: S102
    out = capsys.readouterr().out
    assert "Epoch     Cost      Clean(R)   Clean(F)   Clean(Te)   lr        s/it" in out
    assert torch.load(workdir / "models" / "unlearned" / "best.pth", weights_only=True)["record_info"]["Epoch"] >= 1


USER_SCRIPT = '''
import torch
import torchunlearn
from torchunlearn.utils.data import UnlearnDataSetup, MergedLoaders
from torchunlearn.unlearn.trainers.finetune import Finetune

# Configuration
MODEL_NAME = "LeNet"
DATA_NAME = "FashionMNIST"
MEAN = [0.2860]
STD = [0.3530]
N_CLASSES = 10

# Load model
model = torchunlearn.utils.load_model(model_name=MODEL_NAME, n_classes=N_CLASSES)
rmodel = torchunlearn.RobModel(model, n_classes=N_CLASSES,
                               normalization_used={'mean': MEAN, 'std': STD})
rmodel.load_dict('save_dict.pth')

# Setup data
setup = UnlearnDataSetup(data_name=DATA_NAME, n_classes=N_CLASSES, mean=MEAN, std=STD)
train_loaders, test_loaders = setup.get_loaders_for_classwise(batch_size=128, omit_label=1,
                                                              train_shuffle_and_transform=True)

trainer = Finetune(rmodel)
trainer.setup(optimizer="SGD(lr=0.01, momentum=0.9, weight_decay=5e-4)", scheduler=None, minimizer=None,
              n_epochs=5)
trainer.record_rob({"(R)": train_loaders['Retain'], "(F)": train_loaders['Forget'], "(Te)": test_loaders['Test']},
                   n_limit=1000)
trainer.fit(MergedLoaders(train_loaders), n_epochs=5, save_path="./models/Test",
            save_best={"Clean(R)": "HB", "Clean(F)": "LBO"}, save_type=None, save_overwrite=True,
            record_type="Epoch")

print("Test accuracy:", rmodel.eval_accuracy(test_loaders['Test']))
print("Forget accuracy:", rmodel.eval_accuracy(train_loaders['Forget']))
rmodel.load_dict("./models/Test/best.pth")
'''


def test_a_torchunlearn_script_runs_with_only_the_import_lines_changed(workdir, capsys):
    """The demo's flow (Basic Usage + Finetune + record_rob + fit + eval_accuracy), written for torchunlearn."""
    compat = to_compat(USER_SCRIPT, offline=False)
    changed = [(a, b) for a, b in zip(USER_SCRIPT.splitlines(), compat.splitlines()) if a != b]
    assert [a for a, _ in changed] == ["import torchunlearn", "from torchunlearn.utils.data import UnlearnDataSetup, MergedLoaders",
                                       "from torchunlearn.unlearn.trainers.finetune import Finetune"]  # fmt: skip
    ns: dict = {}
    exec(compat, ns)  # noqa: S102
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line[:1].isdigit()]
    assert [r[0] for r in rows] == ["1", "2", "3", "4", "5"]
    test_acc = float(out.split("Test accuracy:")[1].split()[0])
    forget_acc = float(out.split("Forget accuracy:")[1].split()[0])
    assert test_acc > 60.0 and forget_acc < 100.0  # fine-tuning without class 1 keeps the other classes
    assert "Record Info:" in out  # best.pth carries torchunlearn's record_info
