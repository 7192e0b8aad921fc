"""Follows Forge dfdcbab6 backend/modules/k_model.py `KModel.apply_model` with an eps predictor
(backend/modules/k_prediction.py `Prediction`: the schedule's sigmas, input scaling, nearest timestep).

Left out: dtypes (float32 throughout), v-prediction, ControlNet's `control` (passed through as None).
"""

import torch


class EpsPrediction:
    def __init__(self, alphas_cumprod):
        self.sigmas = ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5
        self.log_sigmas = self.sigmas.log()

    def calculate_input(self, sigma, noise):
        return noise / (sigma.view(-1, 1, 1, 1) ** 2 + 1.0) ** 0.5

    def timestep(self, sigma):
        dists = sigma.log() - self.log_sigmas[:, None]
        return dists.abs().argmin(dim=0).view(sigma.shape)

    def calculate_denoised(self, sigma, model_output, model_input):
        return model_input - model_output * sigma.view(-1, 1, 1, 1)


class KModel(torch.nn.Module):
    def __init__(self, diffusion_model, alphas_cumprod):
        super().__init__()
        self.diffusion_model = diffusion_model
        self.predictor = EpsPrediction(alphas_cumprod)

    def apply_model(self, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options={}, **kwargs):
        sigma = t
        xc = self.predictor.calculate_input(sigma, x)
        if c_concat is not None:
            xc = torch.cat([xc, c_concat], dim=1)
        timesteps = self.predictor.timestep(t).float()
        model_output = self.diffusion_model(xc, timesteps, context=c_crossattn, control=control,
                                            transformer_options=transformer_options, **kwargs).float()
        return self.predictor.calculate_denoised(sigma, model_output, x)
