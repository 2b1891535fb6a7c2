"""The equivariant LoRA layer for e3nn o3.Linear, through peft's own machinery (inject, train, merge, save, load)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
o3 = pytest.importorskip("e3nn.o3")
peft = pytest.importorskip("peft")

from umlip_helpers.models.lora_e3nn import E3nnLinearLora, lora_config  # noqa: E402

IRREPS = o3.Irreps("6x0e + 4x1o + 3x2e")


class TinyEquivariantNet(torch.nn.Module):
    """Two o3.Linear layers with an equivariant gated nonlinearity between them."""

    def __init__(self):
        super().__init__()
        self.first = o3.Linear(IRREPS, IRREPS)
        self.second = o3.Linear(IRREPS, o3.Irreps("3x0e + 2x1o"))
        self.norm_gate = o3.Norm(IRREPS)
        self.register_buffer("copy_dims", torch.tensor([ir.dim for mul, ir in IRREPS for _ in range(mul)]))

    def forward(self, x):
        h = self.first(x)
        gates = torch.sigmoid(self.norm_gate(h))  # invariant per irrep copy
        h = h * torch.repeat_interleave(gates, self.copy_dims, dim=-1)
        return self.second(h)


def build(seed=0):
    torch.manual_seed(seed)
    return TinyEquivariantNet().double()


def train_a_little(model, x, steps=5):
    optimiser = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.05)
    target = torch.randn(x.shape[0], model.base_model.model.second.irreps_out.dim, dtype=x.dtype,
                         generator=torch.Generator().manual_seed(3))
    losses = []
    for _ in range(steps):
        optimiser.zero_grad()
        loss = ((model(x) - target) ** 2).mean()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    return losses


@pytest.fixture
def features():
    return torch.randn(7, IRREPS.dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def test_zero_initialised_adapter_predicts_exactly_like_the_base_model(features):
    base = build()
    expected = base(features).detach().clone()
    model = peft.get_peft_model(base, lora_config(["first", "second"], r=2))
    assert isinstance(model.base_model.model.first, E3nnLinearLora)
    assert torch.equal(model(features), expected)


def test_only_adapters_train_and_the_loss_falls(features):
    model = peft.get_peft_model(build(), lora_config(["first", "second"], r=2))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    losses = train_a_little(model, features, steps=10)
    assert losses[-1] < 0.9 * losses[0]
    after = dict(model.named_parameters())
    assert all(torch.equal(after[n], v) for n, v in before.items()), "a frozen base weight changed"
    n_lora = sum(p.numel() for n, p in model.named_parameters() if p.requires_grad)
    # rank 2 on blocks (6x6, 4x4, 3x3) and (6x3, 4x2): 2*(12+8+6) + 2*(9+6) = 82
    assert n_lora == 82


def test_equivariance_holds_after_training_and_after_merging(features):
    model = peft.get_peft_model(build(), lora_config(["first", "second"], r=2))
    train_a_little(model, features)
    torch.manual_seed(5)
    rotation = o3.rand_matrix().double()
    d_in = IRREPS.D_from_matrix(rotation)
    d_out = model.base_model.model.second.irreps_out.D_from_matrix(rotation)

    def check(net):
        rotated_then_net = net(features @ d_in.T)
        net_then_rotated = net(features) @ d_out.T
        torch.testing.assert_close(rotated_then_net, net_then_rotated, atol=1e-10, rtol=0)

    with torch.no_grad():
        check(model)
        unmerged = model(features).clone()
        merged_net = model.merge_and_unload()
        assert type(merged_net.first) is o3.Linear  # merged: exactly the base architecture, no adapter cost
        check(merged_net)
        torch.testing.assert_close(merged_net(features), unmerged, atol=1e-12, rtol=0)
        assert not torch.allclose(merged_net(features), build()(features))


def test_merge_then_unmerge_restores_the_base_weights(features):
    model = peft.get_peft_model(build(), lora_config(["first"], r=3, init_lora_weights=False))
    layer = model.base_model.model.first
    original = layer.get_base_layer().weight.detach().clone()
    with torch.no_grad():
        live = model(features).clone()
        layer.merge()
        torch.testing.assert_close(model(features), live, atol=1e-12, rtol=0)
        layer.unmerge()
    torch.testing.assert_close(layer.get_base_layer().weight, original, atol=1e-12, rtol=0)


def test_peft_save_and_load_round_trip(tmp_path, features):
    model = peft.get_peft_model(build(), lora_config(["first", "second"], r=2))
    train_a_little(model, features)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "adapter_model.safetensors").is_file()
    with torch.no_grad():
        expected = model(features).clone()
    loaded = peft.PeftModel.from_pretrained(build(), tmp_path, config=lora_config(["first", "second"], r=2))
    with torch.no_grad():
        torch.testing.assert_close(loaded(features), expected, atol=1e-12, rtol=0)


def test_layers_with_external_weights_are_refused():
    class WithExternalWeights(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = o3.Linear(IRREPS, IRREPS, internal_weights=False, shared_weights=False)
            self.radial = torch.nn.Linear(4, self.lin.weight_numel)  # produces the per-sample weights

    with pytest.raises(ValueError, match="external or per-sample weights"):
        peft.get_peft_model(WithExternalWeights(), lora_config(["lin"], r=2))
