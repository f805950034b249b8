import torch

from streamdit.flow import euler_step, flow_matching_loss, interpolate, predict_clean, velocity_target


def test_interpolate_is_the_straight_path_per_frame():
    x0 = torch.randn(2, 3, 1, 2, 2)
    e = torch.randn(2, 3, 1, 2, 2)
    t = torch.tensor([[0.0, 0.5, 1.0], [0.25, 0.75, 0.1]])
    x_t = interpolate(x0, e, t)
    assert torch.equal(x_t[:, 0][0], x0[0, 0])  # t = 0 is clean
    assert torch.equal(x_t[0, 2], e[0, 2])  # t = 1 is pure noise
    assert torch.allclose(x_t[1, 1], 0.25 * x0[1, 1] + 0.75 * e[1, 1])


def test_loss_is_masked_mse_on_velocity():
    x0, e = torch.randn(2, 4, 3, 4, 4), torch.randn(2, 4, 3, 4, 4)
    target = velocity_target(x0, e)
    assert torch.equal(target, e - x0)
    pred = target.clone()
    pred[:, 0] += 10.0  # a huge error on the reference frame must not count
    mask = torch.tensor([[False, True, True, True]] * 2)
    assert flow_matching_loss(pred, target, mask).item() == 0.0
    pred[1, 2] += 2.0  # one frame of 8 regressed frames off by 2 everywhere: MSE 4 / 6 frames
    assert abs(flow_matching_loss(pred, target, mask).item() - 4.0 / 6) < 1e-6


def test_euler_with_true_velocity_follows_the_path_exactly():
    x0, e = torch.randn(1, 2, 3, 2, 2), torch.randn(1, 2, 3, 2, 2)
    t_now, t_next = torch.tensor([[0.8, 1.0]]), torch.tensor([[0.3, 1.0]])
    x = interpolate(x0, e, t_now)
    stepped = euler_step(x, velocity_target(x0, e), t_now, t_next)
    assert torch.allclose(stepped, interpolate(x0, e, t_next), atol=1e-6)
    assert torch.equal(stepped[:, 1], x[:, 1])  # zero step size leaves the frame alone
    assert torch.allclose(predict_clean(x, velocity_target(x0, e), t_now), x0, atol=1e-6)
