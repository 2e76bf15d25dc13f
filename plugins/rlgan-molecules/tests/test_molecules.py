import math

import pytest
import torch

from rlgan_core import RewardContext
from rlgan_core.plugins import describe_plugins, registries
from rlgan_core.testing import check_reward
from rlgan_molecules import PMO_TASKS, MoleculeReward, OracleBudget, auc_top_k, load_policy, score
from rlgan_molecules.oracles import CELECOXIB, MESTRANOL, THIOTHIXENE, TROGLITAZONE, oracle
from rlgan_molecules.smiles import Vocabulary, canonical, tokenize

PMO_NAMES = ["qed", "celecoxib_rediscovery", "troglitazone_rediscovery", "thiothixene_rediscovery",
             "albuterol_similarity", "mestranol_similarity", "isomers_c7h8n2o2", "isomers_c9h10n2o2pf2cl",
             "median1", "median2", "amlodipine_mpo", "fexofenadine_mpo", "osimertinib_mpo", "perindopril_mpo",
             "ranolazine_mpo", "sitagliptin_mpo", "zaleplon_mpo", "deco_hop", "scaffold_hop", "valsartan_smarts"]


# --- SMILES ---------------------------------------------------------------------------------------


def test_tokens_keep_bracket_atoms_halogens_and_two_digit_rings_whole():
    assert tokenize("C[C@@H](Cl)c1cc[nH]c1Br") == ["C", "[C@@H]", "(", "Cl", ")", "c", "1", "c", "c", "[nH]", "c", "1", "Br"]
    assert tokenize("C%10CCCCC%10") == ["C", "%10", "C", "C", "C", "C", "C", "%10"]


def test_vocabulary_round_trip_and_errors():
    vocabulary = Vocabulary.build(["CCO", "c1ccccc1Cl"])
    rows = vocabulary.encode_batch(["CCO", "c1ccccc1Cl"], 12)
    assert vocabulary.decode_batch(rows) == ["CCO", "c1ccccc1Cl"]
    assert rows[0, 3] == vocabulary.end and rows[0, 4:].eq(vocabulary.pad).all()
    with pytest.raises(ValueError, match="'Br'"):
        vocabulary.encode("CBr")
    with pytest.raises(ValueError, match="more than the length"):
        vocabulary.encode_batch(["CCCCCC"], 4)


def test_invalid_smiles_are_none_never_an_error():
    for bad in ["", "C1CC", "c1cccc1", "C(C", "[Xx]", "C%1"]:
        assert canonical(bad) is None
    assert canonical("OCC") == canonical("C(O)C") == "CCO"


# --- oracles --------------------------------------------------------------------------------------


def test_every_pmo_oracle_is_registered_under_its_name():
    found = registries().rewards
    assert sorted(PMO_TASKS) == sorted(PMO_NAMES)
    for name in PMO_NAMES:
        assert found.get(name).plugin == "molecules"
    listed = {plugin["name"]: plugin for plugin in describe_plugins()}
    assert listed["molecules"]["distribution"] == "rlgan-molecules"


@pytest.mark.parametrize("task, drug", [("celecoxib_rediscovery", CELECOXIB), ("troglitazone_rediscovery", TROGLITAZONE),
                                        ("thiothixene_rediscovery", THIOTHIXENE), ("mestranol_similarity", MESTRANOL),
                                        ("albuterol_similarity", "OCc1cc(C(O)CNC(C)(C)C)ccc1O")])
def test_a_drug_scores_one_in_its_own_rediscovery_or_similarity(task, drug):
    assert score(task, [drug]) == [pytest.approx(1.0)]


def test_ecfp4_tanimoto_against_hand_counted_environments():
    # ethanol and propanol: Morgan radius-2 environments counted by hand.  Ethanol {C(CH3), C(CH2),
    # O, CH3-C, CH2-(C,O), O-C, whole} = 7 ids; the two molecules share 3 ids with counts, giving
    # a count Tanimoto that the oracle's parts must reproduce.
    from rdkit import Chem
    from rdkit.Chem import AllChem

    def count_tanimoto(a, b):
        fa = AllChem.GetMorganFingerprint(Chem.MolFromSmiles(a), 2).GetNonzeroElements()
        fb = AllChem.GetMorganFingerprint(Chem.MolFromSmiles(b), 2).GetNonzeroElements()
        shared = sum(min(fa[k], fb[k]) for k in fa.keys() & fb.keys())
        return shared / (sum(fa.values()) + sum(fb.values()) - shared)

    celecoxib_like = "Cc1ccc(-c2cc(C(F)(F)F)nn2-c2ccc(S(N)(=O)=O)cc2)cc1C"
    assert score("celecoxib_rediscovery", [celecoxib_like])[0] == pytest.approx(count_tanimoto(celecoxib_like, CELECOXIB))


def test_qed_matches_published_values():
    # Bickerton et al. 2012 report QED 0.55 for aspirin; RDKit's implementation of the same weights
    assert score("qed", ["CC(=O)Oc1ccccc1C(=O)O"])[0] == pytest.approx(0.55, abs=0.01)


def test_isomer_scores_by_hand():
    assert score("isomers_c7h8n2o2", ["Cc1cc([N+](=O)[O-])ccc1N"])[0] == pytest.approx(1.0)
    # C8H10N2O2: C off by one (e^-1/2), H off by two (e^-2), N and O exact, 22 atoms vs 19 (e^-9/8)
    expected = (math.exp(-0.5) * math.exp(-2) * math.exp(-9 / 8)) ** (1 / 5)
    assert score("isomers_c7h8n2o2", ["CCc1cc([N+](=O)[O-])ccc1N"])[0] == pytest.approx(expected)


def test_median1_is_the_geometric_mean_of_two_similarities():
    camphor_to_menthol = score("median1", ["CC1(C)C2CCC1(C)C(=O)C2"])[0]
    from rdkit import Chem
    from rdkit.Chem import AllChem
    from rdkit.DataStructs import TanimotoSimilarity

    fps = [AllChem.GetMorganFingerprint(Chem.MolFromSmiles(s), 2) for s in ("CC1(C)C2CCC1(C)C(=O)C2", "CC(C)C1CCC(C)CC1O")]
    assert camphor_to_menthol == pytest.approx(math.sqrt(TanimotoSimilarity(*fps)))


def test_every_oracle_scores_in_the_unit_interval():
    molecules = ["CCO", "c1ccccc1", CELECOXIB, TROGLITAZONE, "CCCOc1cc2ncnc(Nc3ccc4ncsc4c3)c2cc1S(=O)(=O)C(C)(C)C"]
    for task in PMO_NAMES:
        values = score(task, molecules + ["not a smiles"])
        assert all(0.0 <= v <= 1.0 for v in values), task
        assert values[-1] == 0.0


def test_deco_hop_start_keeps_its_scaffold_and_decorations():
    start = "CCCOc1cc2ncnc(Nc3ccc4ncsc4c3)c2cc1S(=O)(=O)C(C)(C)C"
    # similarity 1 (clipped), both decorations present (0, 0), scaffold present (1)
    assert score("deco_hop", [start])[0] == pytest.approx((1 + 0 + 0 + 1) / 4)
    # scaffold hop: similarity 1, decoration present (1), scaffold present (0)
    assert score("scaffold_hop", [start])[0] == pytest.approx((1 + 1 + 0) / 3)


def test_the_pharmacophore_fingerprint_sets_rdkits_bits():
    from rdkit import Chem
    from rdkit.Chem.Pharm2D import Generate, Gobbi_Pharm2D

    from rlgan_molecules.oracles import pharmacophore_fingerprint
    from rlgan_molecules.smiles import read_moses

    # MOSES test molecules, drugs, salts and fragments in pieces, too few features for a pair
    smiles = read_moses("test", limit=300) + [CELECOXIB, TROGLITAZONE, THIOTHIXENE, MESTRANOL, "[Na+].[Cl-]",
                                             "c1ccccc1O.NCCO", "C", "CCO", "O=C(O)c1ccccc1C(=O)O"]
    for text in smiles:
        molecule = Chem.MolFromSmiles(text)
        expected = Generate.Gen2DFingerprint(molecule, Gobbi_Pharm2D.factory)
        got = pharmacophore_fingerprint(molecule)
        assert got.GetNumBits() == expected.GetNumBits()
        assert list(got.GetOnBits()) == list(expected.GetOnBits()), text


def test_unknown_oracle_names_the_known_ones():
    with pytest.raises(KeyError, match="qed"):
        oracle("drd2")


# --- the reward base class ------------------------------------------------------------------------


class Recorder(MoleculeReward):
    def __init__(self):
        self.seen = []

    def score(self, smiles):
        self.seen.extend(smiles)
        return [len(s) / 100 for s in smiles]


def test_a_third_party_reward_never_sees_invalid_smiles():
    policy = load_policy()
    vocabulary = policy.vocabulary
    tokens = vocabulary.encode_batch(["OCC", "C1CC", "c1ccccc1"], 20)
    reward = Recorder()
    values = reward(tokens, RewardContext(generator=policy))
    assert reward.seen == ["CCO", "c1ccccc1"]  # canonical, the invalid one left out
    assert values.tolist() == pytest.approx([0.03, 0.0, 0.08])
    check_reward(reward, tokens, RewardContext(generator=policy))


def test_a_reward_that_miscounts_is_an_error():
    class TooMany(MoleculeReward):
        def score(self, smiles):
            return [1.0] * (len(smiles) + 1)

    with pytest.raises(ValueError, match="more values"):
        TooMany().score_smiles(["CCO"])


def test_score_refuses_a_reward_that_is_not_a_molecule_reward():
    with pytest.raises(TypeError, match="not a molecule reward"):
        score("mirror_symmetry", ["CCO"])


# --- budget and AUC -------------------------------------------------------------------------------


def test_budget_counts_new_valid_canonical_smiles_only():
    budget = OracleBudget(max_calls=3)
    forms = [canonical(s) for s in ["CCO", "OCC", "C1CC", "c1ccccc1"]]
    fresh = budget.new(forms)
    assert fresh == ["CCO", "c1ccccc1"]
    budget.record(fresh, [0.5, 0.25])
    assert budget.calls == 2 and not budget.spent
    assert budget.new(forms + ["CCN", "CCC"]) == ["CCN"]  # only one call is left
    assert budget.lookup(forms) == [0.5, 0.5, 0.0, 0.25]


def test_auc_by_hand():
    # 200 calls, every score 1 from the start: the curve is 1 at 100 and 200, 0 at 0
    assert auc_top_k([1.0] * 200, k=10, max_calls=200) == pytest.approx((100 * 0.5 + 100 * 1.0) / 200)
    # a run that stops at 100 of 300 calls is padded with its last value
    assert auc_top_k([0.5] * 100, k=1, max_calls=300) == pytest.approx((100 * 0.25 + 200 * 0.5) / 300)
    # top-10 mean over fewer than 10 molecules is their mean; then the best 10
    scores = [0.1] * 50 + [1.0] * 5 + [0.0] * 45
    assert auc_top_k(scores, k=10, max_calls=100) == pytest.approx(((0.0 + (5 * 1.0 + 5 * 0.1) / 10) / 2))


# --- the prior ------------------------------------------------------------------------------------


def test_the_shipped_prior_writes_mostly_valid_molecules():
    policy = load_policy()
    smiles = policy.smiles(policy.sample(200, seed=0))
    assert sum(canonical(s) is not None for s in smiles) / len(smiles) > 0.85
    tokens = policy.sample(4, seed=1)
    assert torch.equal(tokens, policy.sample(4, seed=1))
    log_p = policy.log_likelihood(tokens)
    assert log_p.shape == (4,) and (log_p < 0).all()


def test_policy_loss_gradient_is_the_likelihood_gradient():
    policy = load_policy()
    tokens = policy.sample(3, seed=2)
    advantages = torch.tensor([1.0, -0.5, 2.0])
    policy.zero_grad()
    policy.policy_loss(tokens, advantages).backward()
    fused = [p.grad.clone() for p in policy.parameters()]
    policy.zero_grad()
    (-(advantages * policy.log_likelihood(tokens)).sum()).backward()
    for a, b in zip(fused, (p.grad for p in policy.parameters())):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-3)


def test_the_smiles_policy_is_an_rlgan_policy():
    from rlgan_core import is_policy
    from rlgan_core.testing import check_policy

    policy = load_policy()
    assert is_policy(policy)

    class Sequences:
        shape = (policy.max_length,)

    check_policy(policy, Sequences())
    latents = torch.randn(6, policy.latent_dim, generator=torch.Generator().manual_seed(0))
    tokens = policy(latents)
    assert torch.equal(tokens, policy(latents))  # the latents are all its randomness
    assert torch.equal(policy.complete(tokens[:, :4], latents), tokens)  # a prefix finished by the same latents
    distribution = policy.distribution(tokens)
    assert torch.equal(distribution.sample(), tokens)
    assert torch.allclose(distribution.log_prob(tokens), policy.log_likelihood(tokens))
    assert (distribution.entropy() > 0).all()
    assert torch.allclose(torch.distributions.kl_divergence(distribution, distribution), torch.zeros(6), atol=1e-5)
    other = load_policy()
    with torch.no_grad():
        other.out.bias.add_(torch.randn(other.out.bias.shape))
    assert (torch.distributions.kl_divergence(distribution, other.distribution(tokens)) > 0).all()


def shipped_config(name, tmp_path, **sections):
    """A config of this plugin's configs/ folder, with some of its sections' keys set."""
    import tomllib
    from pathlib import Path

    from rlgan_core.config import parse_config

    raw = tomllib.loads((Path(__file__).parents[1] / "configs" / f"{name}.toml").read_text())
    for section, values in sections.items():
        for key, value in values.items():
            target = raw.setdefault(section, {})
            for part in key.split(".")[:-1]:
                target = target[part]
            target[key.split(".")[-1]] = value
    return parse_config(raw, name)


def test_the_core_reinforce_strategy_trains_the_smiles_policy_on_a_pmo_task(tmp_path):
    import json

    from rlgan_core.engine import Engine

    config = shipped_config("reinforce", tmp_path, run={"steps": 3, "batch_size": 16},
                            data={"limit": 100}, evaluation={"samples": 20}, logging={"progress": False})
    prior = load_policy()
    engine = Engine(config, tmp_path / "run")
    summary = engine.run()
    assert summary["steps"] == 3 and 0 < summary["reward_qed"] <= 1
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    trained = [row for row in logged if "policy/kl" in row]
    assert trained and all(row["policy/entropy"] > 0 and row["policy/kl"] >= 0 for row in trained)
    assert not torch.equal(engine.generator.out.weight, prior.out.weight)


def test_organ_runs_seqgan_with_a_pmo_task_as_its_objective(tmp_path):
    pytest.importorskip("rlgan_seqgan")
    from rlgan_core.engine import Engine

    config = shipped_config("organ", tmp_path, run={"steps": 2, "batch_size": 8}, data={"limit": 100},
                            strategy={"discriminator_pretrain_rounds": 1, "discriminator_samples": 16},
                            rewards={"rollout.rollouts": 1}, evaluation={"samples": 20},
                            logging={"progress": False})
    prior = load_policy()
    engine = Engine(config, tmp_path / "run")
    summary = engine.run()
    assert summary["steps"] == 2 and 0 < summary["reward_qed"] <= 1
    assert not torch.equal(engine.generator.out.weight, prior.out.weight)  # the adversarial epoch trained it


# --- the strategies under the budget --------------------------------------------------------------


def budget_config(tmp_path, strategy, calls, **options):
    from rlgan_core.config import load_config

    lines = [f"[run]\nname = \"{strategy}\"\nsteps = 1000\nbatch_size = 32\nseed = 3\n",
             "[data]\nname = \"moses\"\nlimit = 200\n", "[generator]\nname = \"smiles_prior\"\n",
             f"[strategy]\nname = \"{strategy}\"\nmax_oracle_calls = {calls}\n"
             + "".join(f"{key} = {value}\n" for key, value in options.items()),
             "[rewards.qed]\n", "[evaluation]\nevery = 1000\nsamples = 50\n",
             "[checkpoint]\nevery = 2\n", "[logging]\nprogress = false\ntensorboard = false\n"]
    path = tmp_path / f"{strategy}.toml"
    path.write_text("\n".join(lines))
    return load_config(path)


@pytest.mark.parametrize("strategy, options", [("prior_sampling", {}), ("reinvent", {"augmentation_rounds": 1, "scaffold_bucket": 5})])
def test_the_budget_ends_the_run_and_the_summary_has_pmo_figures(tmp_path, strategy, options):
    from rlgan_core.engine import Engine

    summary = Engine(budget_config(tmp_path, strategy, 100, **options), tmp_path / "run").run()
    assert summary["oracle_calls"] == 100
    assert summary["steps"] < 1000
    for key in ("auc_top1", "auc_top10", "auc_top100", "top10_mean", "validity", "uniqueness", "diversity"):
        assert 0.0 < summary[key] <= 1.0, key
    assert summary["auc_top1"] >= summary["auc_top10"] >= summary["auc_top100"]
    assert (tmp_path / "run" / "summary.json").exists() and (tmp_path / "run" / "best_molecules.png").exists()


def test_a_resumed_reinvent_run_spends_the_same_budget_as_an_uninterrupted_one(tmp_path):
    from rlgan_core.checkpoint import list_checkpoints
    from rlgan_core.engine import Engine

    whole = Engine(budget_config(tmp_path, "reinvent", 120), tmp_path / "whole").run()
    first = Engine(budget_config(tmp_path, "reinvent", 120), tmp_path / "split")
    first.config.run.steps = 2
    first.run()
    resumed = Engine(budget_config(tmp_path, "reinvent", 120), tmp_path / "split")
    resumed.load_checkpoint(list_checkpoints(tmp_path / "split" / "checkpoints")[-1])
    assert resumed.strategy.budget.calls > 0
    summary = resumed.run()
    assert summary["steps"] == whole["steps"]
    assert summary["auc_top10"] == pytest.approx(whole["auc_top10"])


def test_reinvent_replays_what_the_policy_wrote_when_the_canonical_form_has_other_tokens(tmp_path):
    """RDKit's canonical form may hold a token the vocabulary lacks (``[SH]``); replay uses the
    policy's own SMILES of the molecule."""
    from rlgan_core.engine import Engine

    engine = Engine(budget_config(tmp_path, "reinvent", 40), tmp_path / "run")
    strategy = engine.strategy
    written = "CS(C)(=O)c1ccccc1"
    form = canonical(written)
    with pytest.raises(ValueError):
        strategy.context.generator.vocabulary.encode(form)
    strategy.budget.record([form], [0.9])
    strategy.written[form] = written
    assert strategy.memory_top()[0] == (0.9, form)
    assert strategy.encode([strategy.written[form]]).shape[0] == 1
    assert engine.run()["oracle_calls"] == 40


def test_the_scaffold_filter_zeroes_training_scores_past_a_full_bucket():
    from rlgan_molecules.strategies import ScaffoldFilter

    same_scaffold = ["Cc1ccccc1", "CCc1ccccc1", "CCCc1ccccc1", "Oc1ccccc1"]
    scaffolds = ScaffoldFilter(bucket=2, min_score=0.4)
    scaffolds.admit([(s, 0.9) for s in same_scaffold] + [("C1CCCCC1O", 0.9), ("CCO", 0.1)])
    assert scaffolds.filter(same_scaffold + ["C1CCCCC1O", "CCO", None], [0.9] * 7) == [0.9, 0.9, 0.0, 0.0, 0.9, 0.9, 0.9]
    assert ScaffoldFilter(0, 0.4).filter(same_scaffold, [0.9] * 4) == [0.9] * 4


def test_patience_ends_a_run_whose_best_molecules_stopped_changing(tmp_path):
    from rlgan_core.engine import Engine

    engine = Engine(budget_config(tmp_path, "reinvent", 10_000, patience=1), tmp_path / "run")
    engine.strategy.stalled = 1
    assert engine.strategy.finished()
    assert not Engine(budget_config(tmp_path, "reinvent", 10_000, patience=0), tmp_path / "other").strategy.finished()


def test_scoring_in_worker_processes_gives_the_same_scores():
    smiles = ["CC(=O)Oc1ccccc1C(=O)O", "not a molecule", "c1ccccc1O", "CCN(CC)CC", "O=C(O)c1ccccc1"]
    for task in ("deco_hop", "median1"):
        here = registries().rewards.get(task).factory()
        workers = registries().rewards.get(task).factory(processes=2)
        assert workers.score_smiles(smiles) == here.score_smiles(smiles)
    with pytest.raises(ValueError, match="processes"):
        registries().rewards.get("qed").factory(processes=-1)


def documented_chemistry_reward(folder):
    """The scoring component of docs/plugins.md's "Chemistry rewards", written out as its
    distribution."""
    import re
    from pathlib import Path

    docs = (Path(__file__).resolve().parents[3] / "docs" / "plugins.md").read_text()
    section = docs[docs.index("## Chemistry rewards"):]
    blocks = re.findall(r"```(python|toml)\n(.*?)```", section, flags=re.S)
    module = next(text for kind, text in blocks if text.startswith("# rlgan_similarity.py"))
    pyproject = next(text for kind, text in blocks if text.startswith("# pyproject.toml"))
    table = next(text for kind, text in blocks if text.startswith("[rewards.similarity]"))
    folder.mkdir()
    (folder / "rlgan_similarity.py").write_text(module)
    (folder / "pyproject.toml").write_text(pyproject)
    return table


def test_the_documented_chemistry_reward_installs_and_reinvent_beats_prior_sampling_on_it(tmp_path):
    import json
    import os
    import re
    import subprocess
    import sys
    from pathlib import Path

    table = documented_chemistry_reward(tmp_path / "rlgan-similarity")
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target",
                    str(site), str(tmp_path / "rlgan-similarity")], check=True, capture_output=True)
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    auc = {}
    for strategy in ("reinvent", "prior_sampling"):
        text = (Path(__file__).resolve().parents[1] / "configs" / f"{strategy}.toml").read_text()
        text = re.sub(r"^\[rewards\.qed\]$", table, text, flags=re.M).replace("max_oracle_calls = 10000", "max_oracle_calls = 3000")
        config = tmp_path / f"{strategy}.toml"
        config.write_text(text + "\n[logging]\nprogress = false\ntensorboard = false\n")
        run = subprocess.run([sys.executable, "-m", "rlgan_core", "train", str(config), "--run-dir", str(tmp_path / strategy)],
                             capture_output=True, text=True, env=env)
        assert run.returncode == 0, run.stderr[-2000:]
        summary = json.loads((tmp_path / strategy / "summary.json").read_text())
        assert summary["oracle_calls"] <= 3000
        auc[strategy] = summary["auc_top10"]
    assert auc["reinvent"] > auc["prior_sampling"] + 0.02, auc
