"""What knows a host's protocol, apart from the maths: one adapter per host, every method reused unchanged.

`a1111.py` adapts the AUTOMATIC1111 webui's CFG denoiser (its callbacks' params, row layout and
conditioning) to a SagRun; `jobs.py` (which job samples now), `infotext.py` (writing and pasting a
picture's parameters, Forge's keys too), `preview.py` (where the crop lies), `refusal.py` (how a
refused setting reaches the UI and the API) and `support.py` (which hosts run us) serve it. Nothing
here imports the webui: what an adapter needs of it is handed over by scripts/.
"""
