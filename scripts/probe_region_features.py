#!/usr/bin/env python3
"""Linear probe of easy-VQA shape and colour from region features (docs/results.md).

Labels per image are read from its questions' answers (an answer that is a shape or a colour);
multinomial logistic regression (L-BFGS) on standardised features of all boxes ("all") or the
whole-image box ("whole"), trained on the training images, accuracy on the test images.

    python scripts/probe_region_features.py TRAIN.safetensors TEST.safetensors TRAIN_ANN TEST_ANN [all|whole]

TRAIN_ANN/TEST_ANN: annotations.jsonl of `tessera data import --format easy-vqa`. Needs torch,
numpy, safetensors.
"""
import json, struct, sys, numpy as np, torch
from safetensors.numpy import load_file
def load(path):
    f=open(path,'rb'); n=struct.unpack('<Q',f.read(8))[0]; h=json.loads(f.read(n))
    ids=json.loads(h['__metadata__']['image_ids']); d=load_file(path)
    return ids, d['features']
def labels(ann):
    out={}
    for line in open(ann):
        r=json.loads(line); iid=r['image'].split('/')[-1][:-4]; s=c=None
        for qa in r['qa']:
            a=qa['answer']
            if a in ('circle','rectangle','triangle'): s=a
            if a in ('red','green','blue','black','gray','teal','brown','yellow'): c=a
        out[iid]=(s,c)
    return out
def xy(feat, ann, mode):
    ids,F=load(feat); lab=labels(ann)
    X = F.reshape(len(F),-1) if mode=='all' else F[:,0]
    return X, [lab[i] for i in ids]
mode=sys.argv[5] if len(sys.argv)>5 else 'all'
Xtr,Ltr=xy(sys.argv[1],sys.argv[3],mode)
Xte,Lte=xy(sys.argv[2],sys.argv[4],mode)
mu,sd=Xtr.mean(0),Xtr.std(0)+1e-6
Xtr=torch.tensor((Xtr-mu)/sd); Xte=torch.tensor((Xte-mu)/sd)
for k,name in [(0,'shape'),(1,'colour')]:
    cls=sorted({l[k] for l in Ltr if l[k]}); 
    ytr=torch.tensor([cls.index(l[k]) if l[k] in cls else -100 for l in Ltr]); yte=torch.tensor([cls.index(l[k]) if l[k] in cls else -100 for l in Lte])
    W=torch.nn.Linear(Xtr.shape[1],len(cls)); opt=torch.optim.LBFGS(W.parameters(),max_iter=300)
    def clo():
        opt.zero_grad(); l=torch.nn.functional.cross_entropy(W(Xtr),ytr,ignore_index=-100)+1e-3*W.weight.pow(2).sum(); l.backward(); return l
    opt.step(clo)
    m=yte!=-100
    print(name, len(cls), 'train', (W(Xtr).argmax(1)==ytr)[ytr!=-100].float().mean().item(), 'test', (W(Xte).argmax(1)[m]==yte[m]).float().mean().item(), 'n', m.sum().item())
