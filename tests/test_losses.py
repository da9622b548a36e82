import torch

from limner.training.losses import hinge_d_loss, hinge_g_loss, matching_aware_gp


def test_hinge_d_loss_by_hand():
    real = torch.tensor([2.0, 0.5])      # relu(1 - x): 0, 0.5 -> mean 0.25
    fake = torch.tensor([-2.0, 0.0])     # relu(1 + x): 0, 1 -> mean 0.5
    mismatched = torch.tensor([1.0, -1.0])  # 2, 0 -> mean 1.0
    assert torch.isclose(hinge_d_loss(real, fake, mismatched), torch.tensor(0.25 + 0.5 * (0.5 + 1.0)))


def test_hinge_g_loss():
    assert hinge_g_loss(torch.tensor([1.0, 3.0])) == -2.0


def test_matching_aware_gp_of_a_linear_critic():
    # D(x, s) = <a, x> + <b, s>: the gradient norm is sqrt(|a|^2 + |b|^2) for every sample.
    a, b = torch.full((3 * 4 * 4,), 0.1), torch.full((5,), 0.2)
    images = torch.randn(6, 3, 4, 4, requires_grad=True)
    sentence = torch.randn(6, 5, requires_grad=True)
    logits = images.flatten(1) @ a + sentence @ b
    norm = torch.sqrt((a**2).sum() + (b**2).sum())
    gp = matching_aware_gp(logits, images, sentence, weight=2.0, power=6.0)
    assert torch.isclose(gp, 2.0 * norm**6)


def test_matching_aware_gp_is_differentiable():
    weight = torch.tensor(0.5, requires_grad=True)
    images = torch.randn(2, 3, 4, 4, requires_grad=True)
    sentence = torch.randn(2, 5, requires_grad=True)
    logits = weight * (images.flatten(1).sum(1) + sentence.sum(1))
    matching_aware_gp(logits, images, sentence).backward()
    assert weight.grad is not None and weight.grad > 0
